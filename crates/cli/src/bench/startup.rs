//! `marketlink bench startup`: how soon a server over a store with many subscriptions answers
//! (issue 22). The store is seeded first (not timed); then a real server starts in this
//! process and is probed over HTTP from the moment it is spawned: (a) `/readyz` 200, (b) the
//! first correct entitlement answer for a random subscription, (c) the index warm. Every
//! answer read along the way is checked against what was seeded.

use std::time::{Duration, Instant};

use anyhow::Context;
use marketlink_core::{Clock, Scope, Subscription, SubscriptionStatus, SystemClock, Tenant};
use marketlink_engine::Providers;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{Seeded, catalog, pct, seeded, status_of};
use crate::config::Config;

/// Issue 22's goal for (a) and (b).
const LIMIT: Duration = Duration::from_secs(2);
/// Checks timed once the index is warm.
const WARM_CHECKS: usize = 2_000;

pub(super) async fn startup(subscriptions: usize, database: Option<String>) -> anyhow::Result<()> {
    anyhow::ensure!(subscriptions >= 2, "seed at least 2 subscriptions");
    let dir = tempfile::tempdir()?;
    let url =
        database.unwrap_or_else(|| format!("sqlite:{}", dir.path().join("startup.db").display()));
    let (seed, seeded) = {
        let started = Instant::now();
        (seed(&url, subscriptions).await?, started.elapsed())
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let probe = Probe {
        http: reqwest::Client::new(),
        base: format!("http://{}", listener.local_addr()?),
        key: seed.key.clone(),
        started: Instant::now(),
    };
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(crate::run::serve_on(
        config(&url),
        Providers::new(),
        listener,
        shutdown.clone(),
        |_| {},
    ));
    let (ready, first) = tokio::join!(probe.ready(), probe.first_answer(&seed));
    let (ready, first) = (ready?, first?);
    let loading = probe.until_warm(&seed).await?;
    let warm = probe.started.elapsed();
    let warmed = probe.checks(&seed, WARM_CHECKS).await?;
    shutdown.cancel();
    server.await??;

    println!("start-up benchmark");
    println!("  store:            {}", marketlink_store::redact_url(&url));
    println!(
        "  subscriptions:    {subscriptions} ({} tenants)",
        seed.tenants.len()
    );
    println!("  seed:             {seeded:.2?} (not part of the figures)");
    figure("(a) /readyz 200:", ready);
    figure("(b) first check:", first);
    println!(
        "  (c) index warm:   {warm:.2?}  ({:.0} subscriptions/s from start; no limit)",
        subscriptions as f64 / warm.as_secs_f64()
    );
    loading.print("checks loading:");
    warmed.print("checks warm:");
    let met = ready < LIMIT && first < LIMIT;
    println!(
        "  goal (a), (b) < 2 s: {}",
        if met { "met" } else { "NOT met" }
    );
    Ok(())
}

fn figure(label: &str, took: Duration) {
    println!(
        "  {label:<17} {took:.2?}  limit {LIMIT:.0?}  ratio {:.3}",
        took.as_secs_f64() / LIMIT.as_secs_f64()
    );
}

/// What was seeded, for checking answers, and a key that may read entitlements.
pub(super) struct Seed {
    pub(super) tenants: Vec<Tenant>,
    pub(super) rows: Vec<Subscription>,
    pub(super) key: String,
}

pub(super) async fn seed(url: &str, subscriptions: usize) -> anyhow::Result<Seed> {
    let now = SystemClock.now();
    let Seeded {
        store,
        tenants,
        rows,
        ..
    } = seeded(url, subscriptions, now).await?;
    let (key, plaintext, hash) = marketlink_web::api_auth::new_key(
        "startup bench",
        vec![Scope::EntitlementsRead],
        None,
        now,
    );
    store.create_api_key(&key, &hash).await?;
    // Closing checkpoints SQLite's write-ahead log, as a restarted host would find it.
    store.close().await;
    Ok(Seed {
        tenants,
        rows,
        key: plaintext,
    })
}

/// `marketlink serve`'s defaults over the seeded store and the bench catalog.
fn config(url: &str) -> Config {
    let mut config = Config::default();
    config.database.url = url.to_owned();
    config.catalog = catalog();
    config
}

/// The answer a check of "dashboards" (in every plan) must give for seeded subscription `i`.
pub(super) fn expected_reason(i: usize) -> &'static str {
    match status_of(i) {
        SubscriptionStatus::Active => "allowed",
        SubscriptionStatus::Pending => "pending",
        SubscriptionStatus::Suspended => "suspended",
        _ => "cancelled",
    }
}

/// Times and verifies HTTP answers, from when the server was spawned.
struct Probe {
    http: reqwest::Client,
    base: String,
    key: String,
    started: Instant,
}

/// Checks made over HTTP: how many, and each one's round trip (sorted).
struct Checks(Vec<Duration>);

impl Checks {
    fn print(&self, label: &str) {
        println!(
            "  {label:<17} {} correct over HTTP, p50 {:.2?}  p99 {:.2?}",
            self.0.len(),
            pct(&self.0, 0.50),
            pct(&self.0, 0.99)
        );
    }
}

impl Probe {
    async fn readyz(&self) -> anyhow::Result<Option<Value>> {
        let response = self
            .http
            .get(format!("{}/readyz", self.base))
            .send()
            .await?;
        if !response.status().is_success() {
            return Ok(None);
        }
        Ok(Some(response.json().await?))
    }

    /// (a): the first `/readyz` 200. The listener is bound before the server starts, so a
    /// request waits in its backlog rather than being refused.
    async fn ready(&self) -> anyhow::Result<Duration> {
        while self.readyz().await?.is_none() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(self.started.elapsed())
    }

    /// Checks subscription `i`; `Ok(false)` when the server is not answering checks yet.
    async fn check(&self, seed: &Seed, i: usize) -> anyhow::Result<bool> {
        let row = &seed.rows[i];
        let tenant = row.tenant_id.context("seeded rows have tenants")?;
        let product = row
            .product_id
            .as_ref()
            .context("seeded rows have products")?;
        let response = self
            .http
            .get(format!(
                "{}/api/v1/check?tenant={tenant}&product={product}&feature=dashboards",
                self.base
            ))
            .bearer_auth(&self.key)
            .send()
            .await?;
        if !response.status().is_success() {
            return Ok(false);
        }
        let answer: Value = response.json().await?;
        let reason = answer["reason"].as_str().unwrap_or_default();
        anyhow::ensure!(
            reason == expected_reason(i),
            "subscription {i} answered `{reason}`, expected `{}`: {answer}",
            expected_reason(i)
        );
        Ok(true)
    }

    /// (b): the first correct answer for a random subscription.
    async fn first_answer(&self, seed: &Seed) -> anyhow::Result<Duration> {
        let i = fastrand::usize(..seed.rows.len());
        while !self.check(seed, i).await? {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(self.started.elapsed())
    }

    /// Random checks until `/readyz` says the index is warm (c): all must be correct.
    async fn until_warm(&self, seed: &Seed) -> anyhow::Result<Checks> {
        let mut timings = Vec::new();
        loop {
            let state = self.readyz().await?;
            if state.is_some_and(|s| s["entitlements"] == "warm") {
                break;
            }
            timings.extend(self.checks(seed, 20).await?.0);
        }
        timings.sort_unstable();
        Ok(Checks(timings))
    }

    async fn checks(&self, seed: &Seed, count: usize) -> anyhow::Result<Checks> {
        let mut timings = Vec::with_capacity(count);
        for _ in 0..count {
            let i = fastrand::usize(..seed.rows.len());
            let t0 = Instant::now();
            anyhow::ensure!(self.check(seed, i).await?, "a check was refused");
            timings.push(t0.elapsed());
        }
        timings.sort_unstable();
        Ok(Checks(timings))
    }
}
