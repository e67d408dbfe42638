//! The vendor's product during the day: client tasks post usage through the HTTP API, each
//! request re-sent with the same idempotency keys until it is answered 2xx.
//!
//! The usage is laid out as cells, one per subscription and hour, hour by hour (oldest
//! first), as a product reports each hour once it has closed; a request carries whole cells,
//! so no hour of a subscription is sent while part of its usage is still on the way.

use std::{
    fmt::Write as _,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use marketlink_core::{Clock, SystemClock};
use marketlink_engine::metering::hour_floor;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use tokio::task::JoinSet;

use super::{super::child::DEMO_USAGE_KEY, DayArgs, seed::World};

/// Which events go where: deterministic, so the verdict recomputes what was posted.
pub(super) struct Plan {
    /// The hours usage is stamped in, oldest first (all closed when the run starts).
    pub hours: Vec<OffsetDateTime>,
    pub subscriptions: usize,
    /// Events per cell (subscription and hour).
    pub per_cell: usize,
    /// Cells per request.
    pub per_request: usize,
    /// When each hour is settled (due for delivery) on the server.
    pub due: Vec<OffsetDateTime>,
    /// RFC 3339 timestamps of event `k` of a cell, per hour.
    stamps: Vec<Vec<String>>,
}

impl Plan {
    pub(super) fn new(args: &DayArgs, now: OffsetDateTime) -> Self {
        let hours: Vec<_> = (1..=args.hours as i64)
            .rev()
            .map(|back| hour_floor(now) - time::Duration::hours(back))
            .collect();
        let cells = args.subscriptions * args.hours;
        let per_cell = (args.events / cells).max(1);
        let stamps = hours
            .iter()
            .map(|hour| {
                (0..per_cell)
                    .map(|k| {
                        let at = *hour + time::Duration::seconds((k * 3600 / per_cell) as i64);
                        at.format(&Rfc3339).unwrap_or_default()
                    })
                    .collect()
            })
            .collect();
        let settle = time::Duration::seconds(args.settle as i64);
        Self {
            due: hours
                .iter()
                .map(|h| *h + time::Duration::hours(1) + settle)
                .collect(),
            hours,
            subscriptions: args.subscriptions,
            per_cell,
            per_request: (args.batch / per_cell).max(1),
            stamps,
        }
    }

    pub(super) fn cells(&self) -> usize {
        self.subscriptions * self.hours.len()
    }

    pub(super) fn events(&self) -> usize {
        self.cells() * self.per_cell
    }

    pub(super) fn requests(&self) -> usize {
        self.cells().div_ceil(self.per_request)
    }

    /// The cell's subscription and hour (indexes).
    pub(super) fn cell(&self, cell: usize) -> (usize, usize) {
        (cell % self.subscriptions, cell / self.subscriptions)
    }

    /// The cell of `subscription` in hour `hour`.
    pub(super) fn cell_of(&self, subscription: usize, hour: usize) -> usize {
        hour * self.subscriptions + subscription
    }

    /// The request a cell is posted in.
    pub(super) fn request_of(&self, cell: usize) -> usize {
        cell / self.per_request
    }

    /// Units of event `k` of `cell`: 1 to 9, spread by a hash.
    fn quantity(cell: usize, k: usize) -> u64 {
        let mut x = (cell as u64) << 20 ^ k as u64 ^ 0x9e37_79b9_7f4a_7c15;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        1 + x % 9
    }

    /// Units posted for a cell in all.
    pub(super) fn units(&self, cell: usize) -> u64 {
        (0..self.per_cell).map(|k| Self::quantity(cell, k)).sum()
    }

    /// The body of request `n`: `{"events": [...]}`.
    fn body(&self, n: usize, world: &World) -> String {
        let cells = n * self.per_request..((n + 1) * self.per_request).min(self.cells());
        let mut body = String::with_capacity(self.per_request * self.per_cell * 190);
        body.push_str("{\"events\":[");
        for cell in cells {
            let (sub, hour) = self.cell(cell);
            for k in 0..self.per_cell {
                if body.len() > 11 {
                    body.push(',');
                }
                let _ = write!(
                    body,
                    "{{\"subscription_id\":\"{}\",\"dimension\":\"api_calls\",\"quantity\":{},\
                     \"timestamp\":\"{}\",\"idempotency_key\":\"day-{cell}-{k}\"}}",
                    world.ids[sub],
                    Self::quantity(cell, k),
                    self.stamps[hour][k]
                );
            }
        }
        body.push_str("]}");
        body
    }
}

/// What the clients did.
pub(super) struct Posted {
    pub requests: usize,
    /// Requests sent again after no answer or a 5xx.
    pub resent: usize,
    /// From the first request to the last answer.
    pub took: Duration,
    /// When each request was answered 2xx (Unix milliseconds).
    pub acknowledged_at: Vec<i64>,
}

/// Shared by the client tasks.
struct Clients {
    plan: Arc<Plan>,
    world: Arc<World>,
    http: reqwest::Client,
    url: String,
    next: AtomicUsize,
    resent: AtomicUsize,
    acknowledged_at: Vec<AtomicI64>,
}

/// Posts every request of `plan` from `clients` tasks.
pub(super) async fn post_all(
    plan: Arc<Plan>,
    world: Arc<World>,
    url: &str,
    clients: usize,
) -> anyhow::Result<Posted> {
    let shared = Arc::new(Clients {
        acknowledged_at: (0..plan.requests()).map(|_| AtomicI64::new(0)).collect(),
        plan,
        world,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        url: format!("{url}/api/v1/usage"),
        next: AtomicUsize::new(0),
        resent: AtomicUsize::new(0),
    });
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let shared = shared.clone();
        tasks.spawn(async move { shared.run().await });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(Posted {
        requests: shared.plan.requests(),
        resent: shared.resent.load(Ordering::Relaxed),
        took: started.elapsed(),
        acknowledged_at: shared
            .acknowledged_at
            .iter()
            .map(|at| at.load(Ordering::Relaxed))
            .collect(),
    })
}

impl Clients {
    /// Takes the next request until none is left.
    async fn run(&self) -> anyhow::Result<()> {
        loop {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            if n >= self.plan.requests() {
                return Ok(());
            }
            let body = self.plan.body(n, &self.world);
            self.send(&body).await?;
            let at = SystemClock.now().unix_timestamp_nanos() / 1_000_000;
            self.acknowledged_at[n].store(at as i64, Ordering::Relaxed);
        }
    }

    /// Sends one request until it is answered 2xx; a 4xx is the benchmark's bug or the
    /// server's, and ends the run.
    async fn send(&self, body: &str) -> anyhow::Result<()> {
        for attempt in 0..600 {
            if attempt > 0 {
                self.resent.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let answer = self
                .http
                .post(&self.url)
                .bearer_auth(DEMO_USAGE_KEY)
                .header("content-type", "application/json")
                .body(body.to_owned())
                .send()
                .await;
            match answer {
                Ok(answer) if answer.status().is_success() => return Ok(()),
                Ok(answer)
                    if answer.status().is_client_error()
                        && answer.status() != reqwest::StatusCode::TOO_MANY_REQUESTS =>
                {
                    let status = answer.status();
                    anyhow::bail!("usage refused: {status} {}", answer.text().await?)
                }
                // No answer, a 429 or a 5xx: the product keeps the batch and sends it again.
                _ => {}
            }
        }
        anyhow::bail!("usage unanswered after 600 attempts")
    }
}
