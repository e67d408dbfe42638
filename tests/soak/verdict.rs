//! The soak's verdict: the marketplaces' own ledgers and subscription states against what
//! marketlink acknowledged.

use std::collections::{BTreeMap, HashMap};

use marketlink_core::{Clock, SubscriptionId, SubscriptionStatus, SystemClock};
use marketlink_engine::metering::hour_floor;
use marketlink_sandbox::aws::SubscriptionState;
use time::OffsetDateTime;

use crate::{buyers::Bought, drive::Acknowledged, stack::SoakStack};

/// Units per (subscription, hour): acknowledged by marketlink, and billed by the marketplace.
#[derive(Debug, Default, PartialEq)]
pub struct Usage {
    pub acknowledged_units: u64,
    pub billed_units: u64,
    /// Acknowledged units the marketplace never billed.
    pub lost_units: u64,
    /// Units billed beyond what was acknowledged.
    pub duplicated_units: u64,
    /// Hours marketlink gave up on or found billed with another quantity.
    pub dead_or_mismatched_hours: i64,
}

impl Usage {
    pub fn settled(&self) -> bool {
        self.lost_units == 0 && self.duplicated_units == 0
    }
}

/// What each marketplace billed for `subs`, per (subscription, hour).
async fn billed(
    stack: &SoakStack,
    subs: &[Bought],
) -> HashMap<(SubscriptionId, OffsetDateTime), f64> {
    let mut billed = HashMap::new();
    let records = stack.aws.metered_records();
    let events = stack.azure.usage_events().await;
    for sub in subs {
        if let Some(purchase) = &sub.aws {
            for record in records
                .iter()
                .filter(|r| r.customer_identifier.as_deref() == Some(&purchase.customer_identifier))
            {
                let quantity: f64 = record.quantity.parse().expect("AWS quantity");
                *billed.entry((sub.ours.id, record.hour)).or_default() += quantity;
            }
        }
        if let Some(id) = sub.azure {
            for event in events.iter().filter(|e| e.resource_id == id) {
                let hour = hour_floor(event.effective_start_time);
                *billed.entry((sub.ours.id, hour)).or_default() += event.quantity;
            }
        }
    }
    billed
}

pub async fn usage(stack: &SoakStack, subs: &[Bought], acknowledged: &Acknowledged) -> Usage {
    let billed = billed(stack, subs).await;
    let mut verdict = Usage::default();
    for (cell, &expected) in &acknowledged.per_hour {
        let got = billed.get(cell).copied().unwrap_or(0.0) as u64;
        verdict.acknowledged_units += expected;
        verdict.lost_units += expected.saturating_sub(got);
        verdict.duplicated_units += got.saturating_sub(expected);
    }
    for (cell, &got) in &billed {
        verdict.billed_units += got as u64;
        if !acknowledged.per_hour.contains_key(cell) {
            verdict.duplicated_units += got as u64;
        }
    }
    if let Ok(backlog) = stack.store.usage_backlog(SystemClock.now()).await {
        verdict.dead_or_mismatched_hours = ["dead", "mismatch"]
            .iter()
            .map(|s| backlog.by_state.get(*s).copied().unwrap_or(0))
            .sum();
    }
    verdict
}

/// The status the marketplace says `sub` has, as marketlink names it.
async fn marketplace_status(stack: &SoakStack, sub: &Bought) -> Option<SubscriptionStatus> {
    if let Some(purchase) = &sub.aws {
        let agreement = stack.aws.agreement(&purchase.agreement_id)?;
        return Some(match agreement.state {
            SubscriptionState::Pending => SubscriptionStatus::Pending,
            SubscriptionState::Subscribed => SubscriptionStatus::Active,
            SubscriptionState::Failed => SubscriptionStatus::Failed,
            SubscriptionState::UnsubscribePending => SubscriptionStatus::UnsubscribePending,
            SubscriptionState::Unsubscribed => SubscriptionStatus::Cancelled,
        });
    }
    let azure = stack.azure.subscription(sub.azure?).await?;
    Some(match azure["saasSubscriptionStatus"].as_str()? {
        "Subscribed" => SubscriptionStatus::Active,
        "Suspended" => SubscriptionStatus::Suspended,
        "Unsubscribed" => SubscriptionStatus::Cancelled,
        _ => SubscriptionStatus::Pending,
    })
}

/// Lifecycle: subscriptions whose state differs from the marketplace's, and marketplace
/// messages marketlink applied more than once.
#[derive(Debug, Default)]
pub struct Lifecycle {
    pub in_step: usize,
    pub out_of_step: Vec<String>,
    pub applied_twice: Vec<String>,
    /// Timeline entries applied from marketplace messages, over all subscriptions.
    pub applied: usize,
}

pub async fn lifecycle(stack: &SoakStack, subs: &[Bought]) -> Lifecycle {
    let mut verdict = Lifecycle::default();
    for sub in subs {
        let ours = stack
            .store
            .get_subscription(sub.ours.id)
            .await
            .expect("subscription");
        let theirs = marketplace_status(stack, sub).await;
        let mut same = theirs == Some(ours.status);
        if let Some(id) = sub.azure
            && let Some(azure) = stack.azure.subscription(id).await
            && ours.status == SubscriptionStatus::Active
        {
            same &= azure["quantity"].as_i64() == ours.quantity.map(i64::from);
        }
        if same {
            verdict.in_step += 1;
        } else {
            verdict.out_of_step.push(format!(
                "{} {}: marketlink {:?} (seats {:?}), marketplace {theirs:?}",
                sub.marketplace, sub.ours.external.external_id, ours.status, ours.quantity
            ));
        }
        let timeline = stack
            .store
            .timeline(sub.ours.id, 10_000)
            .await
            .expect("timeline");
        // One message may apply several things (a plan and its seats): each once.
        let mut per_message: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for entry in timeline
            .iter()
            .filter(|e| e.outcome == "applied" && e.source.starts_with("inbox:"))
        {
            *per_message
                .entry((entry.source.as_str(), entry.kind.as_str()))
                .or_default() += 1;
            verdict.applied += 1;
        }
        verdict.applied_twice.extend(
            per_message
                .into_iter()
                .filter(|(_, n)| *n > 1)
                .map(|((source, kind), n)| format!("{source} {kind} applied {n} times")),
        );
    }
    verdict
}
