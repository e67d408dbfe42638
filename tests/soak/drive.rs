//! What happens during the soak: the vendor's product reports usage (re-sending whatever got
//! no answer), the marketplaces change subscriptions, and replicas die by SIGKILL.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use marketlink_core::{Clock, SubscriptionId, SystemClock};
use marketlink_engine::metering::hour_floor;
use marketlink_sandbox::{aws::SubscriptionAction, azure::MarketplaceAction};
use serde_json::json;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    buyers::Bought,
    stack::{SoakStack, USAGE_KEY},
};

/// A small deterministic generator (xorshift64*): a run is repeated with its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }

    pub fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from + 1))
    }
}

/// Usage goes to the hours from this many back up to two back (AWS takes six hours back).
pub const HOURS_BACK: i64 = 5;

/// The settle time (seconds) after which the hour `back` hours before the current one is due
/// and every later hour still open: usage delivery is released one hour at a time.
pub fn settle_releasing(back: i64) -> i64 {
    let now = SystemClock.now();
    let released_end = hour_floor(now) - time::Duration::hours(back - 1);
    (now - released_end).whole_seconds() - 1
}

/// Usage marketlink answered 2xx for: (subscription, hour) → quantity, summed per key once.
#[derive(Debug, Default)]
pub struct Acknowledged {
    pub events: usize,
    pub posts: usize,
    pub resent: usize,
    /// Events refused because their hour had been sent (409): the product reports them in a
    /// later hour; not billed here.
    pub refused: usize,
    pub per_hour: HashMap<(SubscriptionId, OffsetDateTime), u64>,
}

/// Posts usage for `subs` until `stop`, each batch re-sent with the same idempotency keys
/// until marketlink answers 2xx; a 4xx is a bug of marketlink or of the soak and fails it.
pub async fn report_usage(
    stack: &SoakStack,
    subs: &[Bought],
    mut rng: Rng,
    worker: usize,
    stop: &AtomicBool,
    acknowledged: &Mutex<Acknowledged>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let base = hour_floor(SystemClock.now()) - time::Duration::hours(HOURS_BACK);
    let mut batch_no = 0;
    while !stop.load(Ordering::Relaxed) {
        batch_no += 1;
        let mut events = Vec::new();
        let mut summed = Vec::new();
        for i in 0..1 + rng.below(8) {
            let sub = &subs[rng.below(subs.len() as u64) as usize].ours;
            let hour = base + time::Duration::hours(rng.below(HOURS_BACK as u64 - 1) as i64);
            let quantity = 1 + rng.below(9);
            let at = hour + time::Duration::seconds(rng.below(3600) as i64);
            events.push(json!({
                "subscription_id": sub.id.to_string(), "dimension": "api_calls",
                "quantity": quantity, "timestamp": at.format(&Rfc3339).expect("time"),
                "idempotency_key": format!("soak-{worker}-{batch_no}-{i}"),
            }));
            summed.push(((sub.id, hour), quantity));
        }
        let body = json!({ "events": events }).to_string();
        let mut attempts = 0;
        let taken = loop {
            attempts += 1;
            assert!(
                attempts < 1_200,
                "usage unanswered for two minutes: no replica serves"
            );
            let sent = client
                .post(format!("{}/api/v1/usage", stack.url))
                .bearer_auth(USAGE_KEY)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(answer) if answer.status().is_success() => break true,
                Ok(answer) if answer.status() == reqwest::StatusCode::CONFLICT => {
                    let text = answer.text().await.unwrap_or_default();
                    assert!(
                        text.contains("already been sent"),
                        "usage refused: 409 {text}"
                    );
                    break false;
                }
                Ok(answer) if answer.status().is_client_error() => {
                    let status = answer.status();
                    panic!(
                        "usage refused: {status} {}",
                        answer.text().await.unwrap_or_default()
                    )
                }
                // No answer, or a 5xx: the product keeps the batch and sends it again.
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        {
            let mut acknowledged = acknowledged.lock().expect("ledger");
            if taken {
                acknowledged.posts += 1;
                acknowledged.resent += attempts - 1;
                acknowledged.events += summed.len();
                for (cell, quantity) in summed {
                    *acknowledged.per_hour.entry(cell).or_default() += quantity;
                }
            } else {
                acknowledged.refused += summed.len();
            }
        }
        // A refusal (the hour was sent) slows the product down: its later hours are open.
        let pause = if taken {
            rng.millis(5, 40)
        } else {
            rng.millis(200, 400)
        };
        tokio::time::sleep(pause).await;
    }
}

/// Marketplace-side changes to `subs` until `stop`: AWS cancellations (SNS and EventBridge),
/// Microsoft seat changes, suspensions, reinstatements, renewals and cancellations. Returns
/// how many the marketplaces took.
pub async fn change_subscriptions(
    stack: &SoakStack,
    subs: &[Bought],
    mut rng: Rng,
    stop: &AtomicBool,
) -> usize {
    let mut applied = 0;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(rng.millis(200, 900)).await;
        let sub = &subs[rng.below(subs.len() as u64) as usize];
        let taken = match (&sub.aws, sub.azure) {
            (Some(purchase), _) => {
                let action = match stack.aws.agreement(&purchase.agreement_id).map(|a| a.state) {
                    Some(marketlink_sandbox::aws::SubscriptionState::Subscribed) => {
                        SubscriptionAction::UnsubscribePending
                    }
                    Some(marketlink_sandbox::aws::SubscriptionState::UnsubscribePending) => {
                        SubscriptionAction::UnsubscribeSuccess
                    }
                    _ => continue,
                };
                stack
                    .aws
                    .send_subscription_event(&purchase.agreement_id, action)
                    .await
                    .is_ok()
            }
            (None, Some(id)) => {
                let action = match rng.below(10) {
                    0..=3 => MarketplaceAction::ChangeQuantity(1 + rng.below(20) as i64),
                    4 | 5 => MarketplaceAction::Suspend,
                    6 | 7 => MarketplaceAction::Reinstate,
                    8 => MarketplaceAction::Renew,
                    _ => MarketplaceAction::Unsubscribe,
                };
                // The marketplace refuses what does not apply (reinstating an active
                // subscription, anything during a pending operation): not counted.
                stack.azure.marketplace_action(id, action).await.is_ok()
            }
            (None, None) => false,
        };
        applied += usize::from(taken);
    }
    applied
}

/// What the killer saw.
#[derive(Debug, Default)]
pub struct Kills {
    pub total: AtomicUsize,
    /// Kills while hourly usage was claimed for delivery (state `sending`).
    pub holding_usage: AtomicUsize,
    /// Kills while received notifications waited to be applied.
    pub holding_notifications: AtomicUsize,
}

/// Kills a random replica every few hundred milliseconds to seconds, and starts it again
/// after a moment, for `period`. With several replicas, sometimes all of them at once. Never
/// cut short between a kill and its restart: the product's re-sends wait for an answer.
pub async fn kill_replicas(stack: &SoakStack, mut rng: Rng, period: Duration, kills: &Kills) {
    let replicas = stack.fleet.ports().len();
    let until = tokio::time::Instant::now() + period;
    loop {
        let pause = rng.millis(300, 2_500);
        if tokio::time::Instant::now() + pause >= until {
            tokio::time::sleep_until(until).await;
            return;
        }
        tokio::time::sleep(pause).await;
        let victims: Vec<usize> = if replicas > 1 && rng.below(5) == 0 {
            (0..replicas).collect()
        } else {
            vec![rng.below(replicas as u64) as usize]
        };
        let now = SystemClock.now();
        let usage = stack.store.usage_backlog(now).await.ok();
        let inbox = stack.store.inbox_backlog(now).await.ok();
        for &victim in &victims {
            if stack.fleet.kill(victim) {
                kills.total.fetch_add(1, Ordering::Relaxed);
                if usage
                    .as_ref()
                    .is_some_and(|u| u.by_state.get("sending").copied().unwrap_or(0) > 0)
                {
                    kills.holding_usage.fetch_add(1, Ordering::Relaxed);
                }
                if inbox.as_ref().is_some_and(|(pending, _)| *pending > 0) {
                    kills.holding_notifications.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        tokio::time::sleep(rng.millis(0, 1_000)).await;
        for victim in victims {
            stack.fleet.start(victim).await;
        }
    }
}

/// Marketplace faults while usage is delivered: late answers (the call took effect, the
/// answer comes after marketlink gave up), throttling and server errors, one every second or
/// so on either marketplace, until `stop`.
pub async fn fault_metering(stack: &SoakStack, mut rng: Rng, stop: &AtomicBool) -> usize {
    use marketlink_sandbox::{aws::InjectedError as Aws, azure::InjectedError as Azure};
    let mut injected = 0;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(rng.millis(300, 1_500)).await;
        match rng.below(6) {
            0 => stack
                .aws
                .inject_errors("BatchMeterUsage", Aws::LateAnswer(2_500), 1),
            1 => stack
                .aws
                .inject_errors("BatchMeterUsage", Aws::Throttling, 2),
            2 => stack.aws.inject_errors("BatchMeterUsage", Aws::Internal, 1),
            3 => stack
                .azure
                .inject_errors("/api/batchUsageEvent", Azure::LateAnswer(3_500), 1),
            4 => stack
                .azure
                .inject_errors("/api/batchUsageEvent", Azure::Throttled(1), 2),
            _ => stack
                .azure
                .inject_errors("/api/batchUsageEvent", Azure::Internal, 1),
        }
        injected += 1;
    }
    injected
}

/// Every replica up again (after the last kill).
pub async fn all_up(stack: &SoakStack) {
    for index in 0..stack.fleet.ports().len() {
        stack.fleet.start(index).await;
    }
}

/// The seed of this run: `SOAK_SEED`, or the clock's nanoseconds (printed to repeat it).
pub fn seed() -> u64 {
    std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}
