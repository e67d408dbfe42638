//! Marketplace-side actions (the buyer or Microsoft) on a subscription, and how in-progress
//! operations settle (the publisher's PATCH, a refused webhook, or the auto-accept timer).

use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::{
    State,
    records::{Action, OperationStatus, RequestSource, Subscription, SubscriptionStatus},
    terms::{check_quantity, term_dates},
};
use crate::azure::{config::AzureSandboxConfig, errors::ApiError};

/// What the buyer (or Microsoft) can do from the marketplace side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarketplaceAction {
    ChangePlan(String),
    ChangeQuantity(i64),
    Suspend,
    Reinstate,
    Renew,
    Unsubscribe,
}

impl State {
    /// Applies a marketplace-side action (buyer or Microsoft) and records its operation.
    pub fn marketplace_action(
        &mut self,
        config: &AzureSandboxConfig,
        subscription: Uuid,
        action: &MarketplaceAction,
        now: OffsetDateTime,
    ) -> Result<Uuid, ApiError> {
        if self.has_pending_operation(subscription)
            && !matches!(
                action,
                MarketplaceAction::Unsubscribe | MarketplaceAction::Suspend
            )
        {
            return Err(ApiError::conflict(
                "another operation is in progress on this subscription",
            ));
        }
        let sub = self
            .subscription_mut(subscription)
            .ok_or_else(|| ApiError::not_found("subscription not found"))?;
        let previous = Some((sub.plan_id.clone(), sub.quantity));
        let (op_action, op_status) = apply(config, sub, action, now)?;
        sub.last_modified = now;
        // Only a refused plan or quantity change has something to revert to.
        let previous = matches!(op_action, Action::ChangePlan | Action::ChangeQuantity)
            .then_some(previous)
            .flatten();
        self.record_operation(
            subscription,
            op_action,
            op_status,
            RequestSource::Azure,
            previous,
            now,
        )
        .ok_or_else(|| ApiError::not_found("subscription not found"))
    }

    /// Settles an in-progress operation: `accept` applies it, otherwise it is reverted, unless
    /// `keep_refused` (`apply_refused_changes`: the refused change stays applied while the
    /// operation says Failed). Returns false when the operation was no longer in progress.
    pub fn settle_operation(
        &mut self,
        operation: Uuid,
        accept: bool,
        reason: Option<String>,
        keep_refused: bool,
        now: OffsetDateTime,
    ) -> bool {
        let Some(op) = self.operations.iter().find(|o| o.id == operation) else {
            return false;
        };
        if op.status != OperationStatus::InProgress {
            return false;
        }
        let (action, sub_id, previous) = (op.action, op.subscription_id, op.previous.clone());
        let mut outcome = (accept, reason);
        if let Some(sub) = self.subscription_mut(sub_id) {
            match (action, accept) {
                // Reinstated only while still suspended: a subscription deleted meanwhile (the
                // publisher's answer to a Reinstate it cannot honour) stays Unsubscribed.
                (Action::Reinstate, true) if sub.status == SubscriptionStatus::Suspended => {
                    sub.status = SubscriptionStatus::Subscribed;
                    sub.last_modified = now;
                }
                (Action::Reinstate, true) => {
                    outcome = (
                        false,
                        Some(format!("the subscription is {}", sub.status.as_str())),
                    );
                }
                (Action::ChangePlan | Action::ChangeQuantity, false) if !keep_refused => {
                    if let Some((plan, quantity)) = previous {
                        sub.plan_id = plan;
                        sub.quantity = quantity;
                        sub.last_modified = now;
                    }
                }
                _ => {}
            }
        }
        if let Some(op) = self.operations.iter_mut().find(|o| o.id == operation) {
            op.status = if outcome.0 {
                OperationStatus::Succeeded
            } else {
                OperationStatus::Failed
            };
            op.error_message = outcome.1;
        }
        true
    }
}

/// The state change of `action` on `sub`; returns the operation to record and its status
/// (changes the publisher may refuse start `InProgress`).
fn apply(
    config: &AzureSandboxConfig,
    sub: &mut Subscription,
    action: &MarketplaceAction,
    now: OffsetDateTime,
) -> Result<(Action, OperationStatus), ApiError> {
    match action {
        MarketplaceAction::ChangePlan(plan_id) => change_plan(config, sub, plan_id),
        MarketplaceAction::ChangeQuantity(quantity) => change_quantity(config, sub, *quantity),
        MarketplaceAction::Suspend => {
            require(sub, sub.status == SubscriptionStatus::Subscribed, "Suspend")?;
            sub.status = SubscriptionStatus::Suspended;
            Ok((Action::Suspend, OperationStatus::Succeeded))
        }
        MarketplaceAction::Reinstate => {
            require(
                sub,
                sub.status == SubscriptionStatus::Suspended,
                "Reinstate",
            )?;
            Ok((Action::Reinstate, OperationStatus::InProgress))
        }
        MarketplaceAction::Renew => {
            require(sub, sub.status == SubscriptionStatus::Subscribed, "Renew")?;
            let from = sub.term_end.map(|e| e + Duration::days(1)).unwrap_or(now);
            let (start, end) = term_dates(from, &sub.term_unit);
            sub.term_start = Some(start);
            sub.term_end = Some(end);
            Ok((Action::Renew, OperationStatus::Succeeded))
        }
        MarketplaceAction::Unsubscribe => {
            let live = sub.status != SubscriptionStatus::Unsubscribed;
            require(sub, live, "Unsubscribe")?;
            sub.status = SubscriptionStatus::Unsubscribed;
            sub.unsubscribed_at = Some(now);
            Ok((Action::Unsubscribe, OperationStatus::Succeeded))
        }
    }
}

fn change_plan(
    config: &AzureSandboxConfig,
    sub: &mut Subscription,
    plan_id: &str,
) -> Result<(Action, OperationStatus), ApiError> {
    require(
        sub,
        sub.status == SubscriptionStatus::Subscribed,
        "ChangePlan",
    )?;
    let plan = config
        .plan(&sub.offer_id, plan_id)
        .ok_or_else(|| ApiError::bad_request(format!("unknown plan {plan_id}")))?;
    if plan.id == sub.plan_id {
        return Err(ApiError::bad_request(
            "the subscription already has this plan",
        ));
    }
    let quantity = if plan.is_price_per_seat {
        Some(sub.quantity.unwrap_or(plan.min_quantity.unwrap_or(1)))
    } else {
        None
    };
    sub.plan_id = plan.id.clone();
    sub.quantity = quantity;
    Ok((Action::ChangePlan, OperationStatus::InProgress))
}

fn change_quantity(
    config: &AzureSandboxConfig,
    sub: &mut Subscription,
    quantity: i64,
) -> Result<(Action, OperationStatus), ApiError> {
    require(
        sub,
        sub.status == SubscriptionStatus::Subscribed,
        "ChangeQuantity",
    )?;
    let plan = config
        .plan(&sub.offer_id, &sub.plan_id)
        .ok_or_else(|| ApiError::bad_request("plan no longer exists"))?;
    let quantity = check_quantity(plan, Some(quantity)).map_err(ApiError::bad_request)?;
    if quantity == sub.quantity {
        return Err(ApiError::bad_request(
            "the subscription already has this quantity",
        ));
    }
    sub.quantity = quantity;
    Ok((Action::ChangeQuantity, OperationStatus::InProgress))
}

/// 400 unless the subscription's status allows `what`.
fn require(sub: &Subscription, allowed: bool, what: &str) -> Result<(), ApiError> {
    if allowed {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{what}: not allowed while the subscription is {}",
            sub.status.as_str()
        )))
    }
}
