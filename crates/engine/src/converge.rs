//! After we answered a change the marketplace asked about: reading back what it settled on.
//!
//! Microsoft's answer to our answer is not the last word. A change it accepted on its own
//! (auto-accept 10 s after the webhook; no second webhook follows) must be applied from the
//! operation and subscription read back. A change we refused may be applied anyway
//! (integrators report a PATCH Failure that did not stop a plan change: SaaS Accelerator
//! PR #436 then takes the new plan; not documented by Microsoft): the refusal is checked at
//! once and once more later, and what Microsoft bills is applied and reported. A Reinstate the
//! vendor declines is answered by deleting the subscription, whose operation is followed to
//! its end. Each case is a [`Why`], carried by the follow-up job so a restart keeps it.

use marketlink_core::{
    ChangeOutcome, ChangeProgress, EventKind, Lifecycle, MarketplaceEvent, MarketplaceView,
    ProviderError, Subscription, SubscriptionId,
};
use marketlink_store::StoreError;
use serde_json::json;

use crate::{
    Engine,
    answered::{AfterAnswer, REFUSAL_RECHECK, Why},
    apply::ApplyOutcome,
};

impl Engine {
    /// Reads back an operation we answered (or could not answer in time) and applies what
    /// the marketplace settled on; if it has not ended, an outbox job keeps following it. A
    /// refusal is checked once more after [`REFUSAL_RECHECK`].
    pub(crate) async fn after_answer(
        &self,
        id: SubscriptionId,
        after: &AfterAnswer,
    ) -> Result<(), StoreError> {
        let sub = self.store.get_subscription(id).await?;
        let marketplace = sub.external.marketplace.to_string();
        let op = after.operation_id.as_str();
        let now = self.clock.now();
        if matches!(after.why, Why::Refused { .. }) {
            let later = now + REFUSAL_RECHECK;
            self.follow_operation_at(id, &marketplace, op, Some(&after.why), later)
                .await?;
        }
        let Some(provider) = self.providers.get(&sub.external.marketplace) else {
            return Ok(());
        };
        match provider.follow_change(&sub.external, op).await {
            Ok(ChangeProgress::Ended {
                succeeded,
                status,
                view,
            }) => {
                self.settle_change(&sub, op, succeeded, &status, &view, Some(&after.why))
                    .await
            }
            Ok(ChangeProgress::Running { .. }) => {
                self.follow_operation_at(id, &marketplace, op, Some(&after.why), now)
                    .await
            }
            Err(error) => {
                tracing::warn!(subscription = %id, operation = op, %error, "reading back an answered change failed; following it from the outbox");
                self.follow_operation_at(id, &marketplace, op, Some(&after.why), now)
                    .await
            }
        }
    }

    /// Records how a marketplace operation we answered was settled (`changed`: its terms
    /// differ from ours and are being applied).
    pub(crate) async fn record_settled(
        &self,
        sub: &Subscription,
        operation_id: &str,
        status: &str,
        why: &Why,
        view: &MarketplaceView,
        changed: bool,
    ) -> Result<(), StoreError> {
        let mut detail = json!({ "operation_id": operation_id, "status": status });
        if let (Ok(value), Some(obj)) = (serde_json::to_value(why), detail.as_object_mut()) {
            obj.insert("why".into(), value);
        }
        self.record(
            sub.id,
            &format!("operation:{operation_id}"),
            why.kind(),
            &why.outcome(status, view, changed),
            detail,
        )
        .await
    }

    /// Declines a Reinstate by policy: deletes the subscription at the marketplace (Microsoft's
    /// answer to a Reinstate that cannot be honoured) and follows the deletion to its end.
    pub(crate) async fn decline_reinstate(
        &self,
        sub: &Subscription,
        event: &MarketplaceEvent,
        source: &str,
    ) -> Result<ApplyOutcome, ProviderError> {
        let provider = self
            .providers
            .get(&sub.external.marketplace)
            .filter(|p| p.capabilities().vendor_cancels);
        let Some(provider) = provider else {
            return Ok(ApplyOutcome::Refused(format!(
                "declined by policy (decline_reinstate), but {} cannot cancel from our side",
                sub.external.marketplace
            )));
        };
        let why = Why::ReinstateDeclined;
        let store_error = |e: StoreError| ProviderError::retryable(e.to_string());
        let outcome = provider.cancel(&sub.external).await?;
        // Told now: Microsoft's own Unsubscribe webhook may end it here before our follow-up
        // does, and that one cannot say why.
        let mut data = crate::webhooks::subscription_data(sub);
        if let Some(obj) = data.as_object_mut() {
            obj.extend(why.marker());
        }
        self.notify_vendor("subscription.cancellation_started", data)
            .await
            .map_err(store_error)?;
        match outcome {
            ChangeOutcome::InProgress { operation_id } => {
                let marketplace = sub.external.marketplace.to_string();
                let now = self.clock.now();
                self.follow_operation_at(sub.id, &marketplace, &operation_id, Some(&why), now)
                    .await
                    .map_err(store_error)?;
            }
            ChangeOutcome::Done => {
                let cancel = MarketplaceEvent {
                    kind: EventKind::Lifecycle {
                        event: Lifecycle::Cancel,
                        reason: Some("reinstatement declined by policy".into()),
                    },
                    occurred_at: self.clock.now(),
                    ..event.clone()
                };
                crate::apply::apply_marked(self, &cancel, source, Some(&why.marker()))
                    .await
                    .map_err(|e| ProviderError::retryable(e.to_string()))?;
            }
        }
        Ok(ApplyOutcome::Refused(
            "declined by policy (decline_reinstate): cancelled at the marketplace".into(),
        ))
    }
}
