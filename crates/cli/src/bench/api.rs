//! `marketlink bench api` (issue 22): the usage API, `POST /api/v1/usage` of one event, under an
//! open loop at fixed rates over keep-alive connections, each request timed from when it was
//! due (`load::open_loop`), on SQLite and PostgreSQL. Goal: p99 < 2 ms at every rate.
//!
//! The server is a child `marketlink serve`, as an operator deploys it: the demo configuration
//! (AWS listing, usage API key) with the API rate limit raised (one key sends everything),
//! logging as configured, and its workers running: the flusher folds the ledger on every run,
//! which on PostgreSQL queues inserts behind a barrier for a moment (ADR 0026). The AWS sandbox
//! runs in this process with the subscriptions' buyers, so the workers' calls are answered.
//! Afterwards the ledger must hold exactly one event per 202.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::body::Body;
use hyper::{Request, StatusCode, header};
use marketlink_core::{Clock, SystemClock};
use marketlink_sandbox::aws::AwsSandboxConfig;
use marketlink_store::{Store, StoreOptions};
use tokio_util::sync::CancellationToken;

use super::{
    Goal,
    child::{ChildServer, DEMO_USAGE_KEY, free_port},
    databases::{self, Backend, Databases},
    load::{self, Latencies, Requests},
};
use crate::{config::demo_base, sandbox};

/// Issue 22's limit on the usage API's p99.
const P99_LIMIT_MS: f64 = 2.0;
/// Subscriptions the events are spread over (request `i` reports for subscription `i mod N`).
const SUBSCRIPTIONS: usize = 100;
/// Buyer accounts are numbered from here (12 digits).
const FIRST_ACCOUNT: u64 = 500_000_000_000;
/// The warm-up before each rate: connections, pools and the writer, closed loop.
const WARM_UP: Duration = Duration::from_millis(300);

/// The sizes of a run.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiRun {
    /// Requests per second of each open loop, in turn.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000, 5_000])]
    pub rates: Vec<u64>,
    /// Seconds of each open loop.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Keep-alive connections of the load generator.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// `[metering] flush_interval_secs` of the server (its default).
    #[arg(long, default_value_t = 60)]
    pub flush_interval: u64,
    #[command(flatten)]
    pub databases: Databases,
}

pub(super) async fn api(run: ApiRun) -> anyhow::Result<()> {
    anyhow::ensure!(
        !run.rates.is_empty() && run.rates.iter().all(|r| *r > 0),
        "give positive rates"
    );
    anyhow::ensure!(run.seconds > 0.0, "run for some time");
    for backend in run.databases.backends() {
        let database = run.databases.open(backend, "api").await?;
        let goals = on(&run, backend, &database.url).await;
        database.remove().await?;
        for goal in goals? {
            goal.print();
        }
    }
    Ok(())
}

/// Every rate against one server on the empty database at `url`; the goals.
async fn on(run: &ApiRun, backend: Backend, url: &str) -> anyhow::Result<Vec<Goal>> {
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let aws = sandbox::start_aws(
        "127.0.0.1:0".parse()?,
        AwsSandboxConfig::default(),
        &sandbox::VendorUrls::for_public_url(&format!("http://127.0.0.1:{port}")),
        Arc::new(SystemClock),
        shutdown.clone(),
    )
    .await?;
    let subscriptions = seed(url, &aws.sandbox).await?;
    let aws_addr = aws.base_url.trim_start_matches("http://").parse()?;
    let mut server = ChildServer::spawn(
        dir.path(),
        &server_config(demo_base(aws_addr)),
        url,
        port,
        &[(
            "MARKETLINK_METERING__FLUSH_INTERVAL_SECS",
            run.flush_interval.to_string(),
        )],
    )?;
    server.ready(true).await?;
    let subscriptions = Arc::new(subscriptions);
    let mut goals = Vec::new();
    for &rate in &run.rates {
        let measured = at_rate(run, &server, &subscriptions, rate).await?;
        let stored = databases::stored_events(url, &measured.prefix).await?;
        measured.print(backend, rate, run, stored);
        anyhow::ensure!(
            stored == measured.answered(),
            "{} requests answered 202, {stored} events stored: every 202 must be one stored event",
            measured.answered()
        );
        goals.push(Goal::at_most(
            format!("usage API p99 at {rate} req/s ({})", backend.as_str()),
            measured.run.quantile(0.99).as_secs_f64() * 1e3,
            P99_LIMIT_MS,
            "ms",
        ));
    }
    server.stop();
    Ok(goals)
}

/// The buyers subscribed in the sandbox and active on "pro" (which meters `api_calls`) in the
/// store, migrated first; their ids, as the usage API takes them.
async fn seed(url: &str, aws: &marketlink_sandbox::aws::AwsSandbox) -> anyhow::Result<Vec<String>> {
    let store = Store::connect(url, &StoreOptions::default()).await?;
    store.migrate().await?;
    let seeded = super::seed::aws_subscribed(
        aws,
        &store,
        FIRST_ACCOUNT,
        SUBSCRIPTIONS,
        Some("pro"),
        SystemClock.now(),
    )
    .await;
    store.close().await;
    Ok(seeded?
        .subscriptions
        .iter()
        .map(|s| s.id.to_string())
        .collect())
}

/// The demo configuration plus the API rate limit no run reaches (the limiter still runs): one
/// key sends every request, and the default (2k/s per key) would answer 429 at 5k/s.
fn server_config(mut demo: String) -> String {
    demo.push_str("\n[rate_limits]\napi = { per_minute = 4294967295, burst = 4294967295 }\n");
    demo
}

/// One rate's figures.
struct Measured {
    /// Every idempotency key of this rate starts with it.
    prefix: String,
    warm: u64,
    run: Latencies,
    /// The server's CPU time during the open loop.
    server_cpu: Duration,
    /// The 1-minute load average before and after the open loop.
    load: (f64, f64),
}

impl Measured {
    fn answered(&self) -> u64 {
        self.warm + self.run.latencies.len() as u64
    }

    fn print(&self, backend: Backend, rate: u64, run: &ApiRun, stored: u64) {
        let answered = self.run.latencies.len();
        let per_request = self
            .server_cpu
            .checked_div(u32::try_from(answered.max(1)).unwrap_or(u32::MAX))
            .unwrap_or_default();
        println!(
            "api: POST /api/v1/usage (1 event, {}, child `marketlink serve`) at {rate}/s for {} s, {} connections, open loop: {answered} answered ({:.0}/s), p50 {:.2?}, p99 {:.2?}, p99.9 {:.2?}, max {:.2?}; generator late p99 {:.2?}, max {:.2?}; server CPU {:.1?} per request; {stored} events stored for {} answers; load average {:.2} → {:.2}",
            backend.as_str(),
            run.seconds,
            run.connections,
            self.run.rate(),
            self.run.quantile(0.50),
            self.run.quantile(0.99),
            self.run.quantile(0.999),
            self.run.latencies.last().copied().unwrap_or_default(),
            load::quantile(&self.run.dispatch_lateness, 0.99),
            self.run
                .dispatch_lateness
                .last()
                .copied()
                .unwrap_or_default(),
            per_request,
            self.answered(),
            self.load.0,
            self.load.1,
        );
    }
}

/// A warm-up, then the open loop at `rate`.
async fn at_rate(
    run: &ApiRun,
    server: &ChildServer,
    subscriptions: &Arc<Vec<String>>,
    rate: u64,
) -> anyhow::Result<Measured> {
    let timestamp = SystemClock
        .now()
        .format(&time::format_description::well_known::Rfc3339)?;
    let prefix = format!("api-r{rate}");
    let usage = |phase: &str| -> Arc<dyn Requests> {
        Arc::new(Usage {
            addr: server.addr,
            prefix: format!("{prefix}-{phase}"),
            subscriptions: subscriptions.clone(),
            timestamp: timestamp.clone(),
        })
    };
    let warm = load::closed_loop(server.addr, run.connections, WARM_UP, usage("warm")).await?;
    let load_before = load_average();
    let cpu = server.cpu();
    let measured = load::open_loop(
        server.addr,
        run.connections,
        rate,
        Duration::from_secs_f64(run.seconds),
        usage("run"),
    )
    .await?;
    Ok(Measured {
        prefix,
        warm: warm.requests,
        run: measured,
        server_cpu: server.cpu().saturating_sub(cpu),
        load: (load_before, load_average()),
    })
}

/// The 1-minute load average (`/proc/loadavg`); zero where unreadable.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// One event per request, each with its own idempotency key, which must be answered 202 with
/// `accepted: 1`.
struct Usage {
    addr: SocketAddr,
    /// Every key starts with it, so each rate and phase has keys of its own.
    prefix: String,
    subscriptions: Arc<Vec<String>>,
    timestamp: String,
}

impl Usage {
    /// The `i`th request's body: one event of a subscription picked by `i`.
    fn event(&self, i: u64) -> String {
        let subscription = &self.subscriptions[(i % self.subscriptions.len() as u64) as usize];
        format!(
            r#"{{"subscription_id":"{subscription}","dimension":"api_calls","quantity":1,"timestamp":"{}","idempotency_key":"{}-{i}"}}"#,
            self.timestamp, self.prefix
        )
    }
}

impl Requests for Usage {
    fn request(&self, i: u64) -> Request<Body> {
        let body = self.event(i);
        // Only a malformed header fails here, and every one is built from valid parts.
        Request::post("/api/v1/usage")
            .header(header::HOST, self.addr.to_string())
            .header(header::AUTHORIZATION, format!("Bearer {DEMO_USAGE_KEY}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_is_one_event_with_its_own_key() {
        let usage = Usage {
            addr: "127.0.0.1:1".parse().unwrap(),
            prefix: "api-r5-run".into(),
            subscriptions: Arc::new(vec!["a".into(), "b".into()]),
            timestamp: "2026-01-01T00:00:00Z".into(),
        };
        let request = usage.request(3);
        assert_eq!(request.uri(), "/api/v1/usage");
        assert_eq!(
            request.headers()[header::AUTHORIZATION],
            "Bearer demo-usage-key-0123"
        );
        let event: serde_json::Value = serde_json::from_str(&usage.event(3)).unwrap();
        assert_eq!(event["subscription_id"], "b");
        assert_eq!(event["idempotency_key"], "api-r5-run-3");
        assert_eq!(event["quantity"], 1);
        assert!(
            usage
                .check(3, StatusCode::ACCEPTED, br#"{"accepted":1,"duplicates":0}"#)
                .is_ok()
        );
        assert!(
            usage
                .check(3, StatusCode::TOO_MANY_REQUESTS, b"{}")
                .is_err()
        );
        assert!(
            usage
                .check(3, StatusCode::ACCEPTED, br#"{"accepted":0,"duplicates":1}"#)
                .is_err()
        );
    }
}
