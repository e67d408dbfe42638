//! Applying a marketplace event to our view of the subscription.
//!
//! Idempotent (a repeated lifecycle event is a no-op in the state machine) and order-safe
//! (lifecycle events, licence changes and plan, quantity and term statements carry the
//! marketplace's time; older ones than what is stored are stale; entitlements are always the
//! full set re-read from the marketplace). An activation newer than a cancellation is a buyer
//! subscribing again: the same subscription, tenant and timeline, active again. Every event
//! lands in the subscription's timeline with what we did about it.

use marketlink_core::{
    ChangeAnswer, EventKind, Lifecycle, MarketplaceEvent, PlanId, ProviderError, Subscription,
    SubscriptionStatus, Transition,
};
use marketlink_store::{LicenseChange, StoreError, TimelineEntry};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    Engine,
    answered::{AfterAnswer, Why},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    Applied,
    /// Already so (a duplicate delivery).
    Unchanged,
    /// Older than what we know.
    Stale,
    /// An activation newer than the end of an ended (`from`) subscription: the buyer
    /// subscribed again, and the subscription is active again.
    Resubscribed {
        from: SubscriptionStatus,
    },
    /// Not legal from the current state, or refused by our change policy.
    Refused(String),
    /// A change request the marketplace settled before our answer reached it (Microsoft
    /// auto-accepts after 10 s); what it settled on is read back and applied separately.
    Settled(String),
}

impl ApplyOutcome {
    fn label(&self) -> String {
        match self {
            Self::Applied => "applied".into(),
            Self::Unchanged => "unchanged".into(),
            Self::Stale => "stale".into(),
            Self::Resubscribed { from } => format!("resubscribed (was {from})"),
            Self::Refused(reason) => format!("refused: {reason}"),
            Self::Settled(reason) => format!("settled by the marketplace: {reason}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

impl ApplyError {
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Provider(ProviderError::Retryable { retry_after, .. }) => *retry_after,
            _ => None,
        }
    }
}

fn kind_label(kind: &EventKind) -> String {
    match kind {
        EventKind::Lifecycle { event, .. } => format!("lifecycle:{}", serde_label(event)),
        EventKind::PlanChanged { .. } => "plan_changed".into(),
        EventKind::QuantityChanged { .. } => "quantity_changed".into(),
        EventKind::Renewed { .. } => "renewed".into(),
        EventKind::EntitlementsChanged { .. } => "entitlements_changed".into(),
        EventKind::ChangeRequested { .. } => "change_requested".into(),
        EventKind::Relicensed { .. } => "relicensed".into(),
    }
}

fn serde_label(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Finds the subscription an event is about, creating it (pending, no tenant yet) when the
/// marketplace tells us about it before the buyer reached the landing page.
async fn subscription_for(
    engine: &Engine,
    event: &MarketplaceEvent,
) -> Result<Subscription, StoreError> {
    let external = &event.subscription;
    if let Some(found) = engine
        .store
        .find_subscription(&external.marketplace, &external.external_id)
        .await?
    {
        return Ok(found);
    }
    let mut fresh = Subscription::pending(external.clone(), engine.clock.now());
    fresh.product_id = engine
        .catalog
        .by_listing(&external.marketplace, &external.product_code)
        .map(|p| p.id.clone());
    fresh.free_trial = event.free_trial.unwrap_or(false);
    engine.store.upsert_subscription(&fresh).await
}

/// What [`decide`] made of an event.
enum Decided {
    /// Recorded, announced to the vendor when applied, and logged.
    Outcome(ApplyOutcome),
    /// A change request we answered (or could not answer in time): recorded, then what the
    /// marketplace settled on is read back ([`Engine::after_answer`]).
    Answered(ApplyOutcome, AfterAnswer),
}

/// Applies one event and records it in the timeline. `source` says where it came from, e.g.
/// `inbox:<id>`.
pub async fn apply_event(
    engine: &Engine,
    event: &MarketplaceEvent,
    source: &str,
) -> Result<ApplyOutcome, ApplyError> {
    apply_marked(engine, event, source, None).await
}

/// [`apply_event`]; the vendor webhook of an applied event also carries `marker` (e.g.
/// `applied_despite_refusal`).
pub(crate) async fn apply_marked(
    engine: &Engine,
    event: &MarketplaceEvent,
    source: &str,
    marker: Option<&Map<String, Value>>,
) -> Result<ApplyOutcome, ApplyError> {
    let now = engine.clock.now();
    let mut subscription = subscription_for(engine, event).await?;
    engine
        .store
        .record_aliases(
            subscription.id,
            &subscription.external.marketplace,
            &event.aliases,
            now,
        )
        .await?;
    let (outcome, after) = match decide(engine, &mut subscription, event, source, now).await? {
        Decided::Outcome(outcome) => (outcome, None),
        Decided::Answered(outcome, after) => (outcome, Some(after)),
    };
    record(engine, &subscription, event, source, &outcome, now).await?;
    let resubscribed = matches!(outcome, ApplyOutcome::Resubscribed { .. });
    if (outcome == ApplyOutcome::Applied || resubscribed)
        && let Some(event_type) = webhook_type(&event.kind)
    {
        let current = engine.store.get_subscription(subscription.id).await?;
        let mut data = crate::webhooks::subscription_data(&current);
        if resubscribed {
            // `subscription.activated` as for any activation, so vendors provision again;
            // the mark tells those who care that this tenant had cancelled.
            data["resubscribed"] = Value::Bool(true);
        }
        if let (Some(marker), Some(obj)) = (marker, data.as_object_mut()) {
            obj.extend(marker.clone());
        }
        engine.notify_vendor(event_type, data).await?;
    }
    tracing::info!(
        subscription = %subscription.id,
        marketplace = %subscription.external.marketplace,
        kind = %kind_label(&event.kind),
        outcome = %outcome.label(),
        "applied marketplace event"
    );
    if let Some(after) = after {
        // Boxed: reading back may apply events in turn.
        Box::pin(engine.after_answer(subscription.id, &after)).await?;
    }
    Ok(outcome)
}

/// Applies the event to `subscription` (updated in place with the terms it states).
async fn decide(
    engine: &Engine,
    subscription: &mut Subscription,
    event: &MarketplaceEvent,
    source: &str,
    now: OffsetDateTime,
) -> Result<Decided, ApplyError> {
    let as_of = event.occurred_at;
    let outcome = match &event.kind {
        EventKind::Lifecycle {
            event: lifecycle, ..
        } => lifecycle_event(engine, subscription, event, *lifecycle, source, now).await?,
        EventKind::PlanChanged { plan_id } => {
            subscription.plan_id = Some(plan_id.clone());
            changed_terms(engine, subscription, as_of, source).await?
        }
        EventKind::QuantityChanged { quantity } => {
            subscription.quantity = Some(*quantity);
            changed_terms(engine, subscription, as_of, source).await?
        }
        EventKind::Renewed { term } => {
            if let Some(term) = term {
                subscription.term = Some(term.clone());
            }
            changed_terms(engine, subscription, as_of, source).await?
        }
        EventKind::EntitlementsChanged { entitlements } => {
            engine
                .store
                .replace_entitlements(subscription.id, entitlements, now)
                .await?;
            ApplyOutcome::Applied
        }
        EventKind::Relicensed { license_arn } => {
            match engine
                .store
                .set_license_arn(subscription.id, license_arn, as_of, now)
                .await?
            {
                LicenseChange::Changed => {
                    // Usage is billed under the licence the subscription holds when an hour is
                    // sent, so every hour sent from now on names the new one.
                    subscription.external.license_arn = Some(license_arn.clone());
                    engine.refresh_entitlements(subscription, source).await;
                    ApplyOutcome::Applied
                }
                LicenseChange::Unchanged => ApplyOutcome::Unchanged,
                LicenseChange::Stale => ApplyOutcome::Stale,
            }
        }
        EventKind::ChangeRequested {
            operation_id,
            plan_id,
            quantity,
            answer_by,
        } => {
            let request = ChangeRequest {
                operation_id,
                plan_id: plan_id.as_ref(),
                quantity: *quantity,
                answer_by: *answer_by,
            };
            return change_request(engine, subscription, request, as_of, source).await;
        }
    };
    Ok(Decided::Outcome(outcome))
}

async fn lifecycle_event(
    engine: &Engine,
    subscription: &mut Subscription,
    event: &MarketplaceEvent,
    lifecycle: Lifecycle,
    source: &str,
    now: OffsetDateTime,
) -> Result<ApplyOutcome, ApplyError> {
    if lifecycle == Lifecycle::Reinstate
        && engine.policy.decline_reinstate
        && subscription.status == SubscriptionStatus::Suspended
    {
        // Boxed: a deletion done at once applies the cancellation in turn.
        return Ok(Box::pin(engine.decline_reinstate(subscription, event, source)).await?);
    }
    if let Some(trial) = event.free_trial.filter(|t| *t != subscription.free_trial) {
        subscription.free_trial = trial;
        engine
            .store
            .update_subscription_terms(subscription, event.occurred_at, now)
            .await?;
    }
    Ok(
        match engine
            .store
            .apply_lifecycle_at(subscription.id, lifecycle, event.occurred_at, now)
            .await
        {
            Ok((active, transition @ Transition::Changed { from, .. })) => {
                // A contract's quantities become readable once it is active, and expire when
                // it ends (AWS: unsubscribe-pending moves their ExpirationDate to the end):
                // re-read them, or reconciliation finds them out of date.
                if matches!(lifecycle, Lifecycle::Activate | Lifecycle::BeginCancel) {
                    engine.refresh_entitlements(&active, source).await;
                }
                if transition.is_resubscription() {
                    // Hourly zero records start again now, not for the hours it was ended.
                    engine
                        .store
                        .usage_resume_zero_fill(active.id, crate::metering::hour_floor(now))
                        .await?;
                    ApplyOutcome::Resubscribed { from }
                } else {
                    ApplyOutcome::Applied
                }
            }
            Ok((_, Transition::Unchanged(_))) => ApplyOutcome::Unchanged,
            Ok((_, Transition::Stale(_))) => ApplyOutcome::Stale,
            Err(StoreError::Domain(illegal)) if lifecycle == Lifecycle::Reinstate => {
                // Microsoft: a Reinstate we cannot honour is answered by cancelling, so the
                // buyer is not billed for a subscription we no longer serve.
                let provider = engine.providers.get(&subscription.external.marketplace);
                match provider {
                    Some(p) if p.capabilities().vendor_cancels => {
                        p.cancel(&subscription.external).await?;
                        ApplyOutcome::Refused(format!(
                            "{illegal}; cancelled at the marketplace instead"
                        ))
                    }
                    _ => ApplyOutcome::Refused(illegal.to_string()),
                }
            }
            Err(StoreError::Domain(illegal)) => ApplyOutcome::Refused(illegal.to_string()),
            Err(other) => return Err(other.into()),
        },
    )
}

/// A change the marketplace asks us to accept or refuse.
struct ChangeRequest<'a> {
    operation_id: &'a str,
    plan_id: Option<&'a PlanId>,
    quantity: Option<u32>,
    answer_by: Option<OffsetDateTime>,
}

/// Answers a change request by our policy (unless the marketplace's window has closed), then
/// applies it if our acceptance was taken. A refusal that was taken is checked against what the
/// marketplace then has; a change settled without our answer is applied as the marketplace
/// settled it (both in [`Engine::after_answer`]).
async fn change_request(
    engine: &Engine,
    subscription: &mut Subscription,
    request: ChangeRequest<'_>,
    as_of: OffsetDateTime,
    source: &str,
) -> Result<Decided, ApplyError> {
    let decision = engine.policy.decide(
        &engine.catalog,
        subscription,
        request.plan_id,
        request.quantity,
    );
    let provider = engine
        .providers
        .get(&subscription.external.marketplace)
        .ok_or_else(|| {
            ProviderError::Configuration(format!(
                "no provider for {}",
                subscription.external.marketplace
            ))
        })?;
    let answer = provider
        .respond_to_change(
            &subscription.external,
            request.operation_id,
            decision.is_ok(),
            request.answer_by,
        )
        .await?;
    let after = |why: Why| AfterAnswer {
        operation_id: request.operation_id.to_owned(),
        why,
    };
    Ok(match (answer, decision) {
        (ChangeAnswer::Taken, Ok(())) => {
            if let Some(plan) = request.plan_id {
                subscription.plan_id = Some(plan.clone());
            }
            if let Some(quantity) = request.quantity {
                subscription.quantity = Some(quantity);
            }
            Decided::Outcome(changed_terms(engine, subscription, as_of, source).await?)
        }
        (ChangeAnswer::Taken, Err(reason)) => Decided::Answered(
            ApplyOutcome::Refused(reason.clone()),
            after(Why::Refused {
                reason,
                plan_id: request.plan_id.cloned(),
                quantity: request.quantity,
            }),
        ),
        (ChangeAnswer::SettledWithout { reason }, decision) => Decided::Answered(
            ApplyOutcome::Settled(reason.clone()),
            after(Why::SettledFirst {
                reason,
                policy_refusal: decision.err(),
            }),
        ),
    })
}

/// The provisioning webhook an applied event becomes.
fn webhook_type(kind: &EventKind) -> Option<&'static str> {
    use marketlink_core::Lifecycle::*;
    Some(match kind {
        EventKind::Lifecycle { event, .. } => match event {
            Activate => "subscription.activated",
            Fail => "subscription.failed",
            Suspend => "subscription.suspended",
            Reinstate => "subscription.reinstated",
            BeginCancel => "subscription.cancellation_started",
            Cancel => "subscription.cancelled",
        },
        EventKind::PlanChanged { .. } => "subscription.plan_changed",
        EventKind::QuantityChanged { .. } => "subscription.quantity_changed",
        EventKind::Renewed { .. } => "subscription.renewed",
        EventKind::EntitlementsChanged { .. } => "entitlements.changed",
        EventKind::ChangeRequested {
            plan_id: Some(_), ..
        } => "subscription.plan_changed",
        EventKind::ChangeRequested { .. } => "subscription.quantity_changed",
        // Where usage is billed changed; the vendor sees no difference.
        EventKind::Relicensed { .. } => return None,
    })
}

async fn record(
    engine: &Engine,
    subscription: &Subscription,
    event: &MarketplaceEvent,
    source: &str,
    outcome: &ApplyOutcome,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    engine
        .store
        .record_timeline(&TimelineEntry {
            id: Uuid::now_v7(),
            subscription_id: subscription.id,
            source: source.to_owned(),
            kind: kind_label(&event.kind),
            outcome: outcome.label(),
            detail: serde_json::to_value(event).unwrap_or_default(),
            occurred_at: event.occurred_at,
            recorded_at: now,
        })
        .await
}

/// [`terms`], then the stored entitlements (plan, seats, expiries) re-read from the
/// marketplace, so they never contradict the subscription's new terms.
async fn changed_terms(
    engine: &Engine,
    subscription: &Subscription,
    as_of: OffsetDateTime,
    source: &str,
) -> Result<ApplyOutcome, StoreError> {
    let outcome = terms(engine, subscription, as_of).await?;
    if outcome == ApplyOutcome::Applied {
        engine.refresh_entitlements(subscription, source).await;
    }
    Ok(outcome)
}

async fn terms(
    engine: &Engine,
    subscription: &Subscription,
    as_of: OffsetDateTime,
) -> Result<ApplyOutcome, StoreError> {
    let applied = engine
        .store
        .update_subscription_terms(subscription, as_of, engine.clock.now())
        .await?;
    Ok(if applied {
        ApplyOutcome::Applied
    } else {
        ApplyOutcome::Stale
    })
}
