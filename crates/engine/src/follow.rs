//! Following a change the vendor started until the marketplace has settled it. Microsoft
//! answers a PATCH or DELETE with an `Operation-Location` to poll until Succeeded, Failed or
//! Conflict; its webhook may come late or not at all, so an outbox job (which survives a
//! restart) polls it and applies what the marketplace then has.

use marketlink_core::{
    ChangeProgress, EventKind, ExternalRef, MarketplaceEvent, MarketplaceView, ProviderError,
    Subscription, SubscriptionId,
};
use marketlink_store::{NewJob, QueueItem, StoreError};
use serde_json::json;

use crate::{
    Engine, answered::Why, apply::apply_marked, backoff::Backoff, reconcile::lifecycle_towards,
};

pub const FOLLOW_CHANGE_JOB: &str = "follow_change";

/// Looks at a running operation this many times at most (at Microsoft's default poll
/// interval, hours) before an operator is asked to look.
const MAX_LOOKS: i64 = 5_000;

/// Where the outbox filed a follow-up job.
pub(crate) enum FollowFiled {
    Done,
    Again,
    Buried,
}

/// What one pass made of a follow-up job.
enum FollowStep {
    Ended,
    Again(time::Duration),
    Failed(ProviderError),
}

impl Engine {
    /// Schedules a look at `operation_id` at `run_at`; `why` says what the look is for
    /// (`None`: a change the vendor started).
    pub(crate) async fn follow_operation_at(
        &self,
        id: SubscriptionId,
        marketplace: &str,
        operation_id: &str,
        why: Option<&Why>,
        run_at: time::OffsetDateTime,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let recheck = if run_at > now { ":recheck" } else { "" };
        let mut payload = json!({ "subscription_id": id, "operation_id": operation_id });
        if let (Some(why), Some(obj)) = (why, payload.as_object_mut()) {
            obj.insert("why".into(), serde_json::to_value(why).unwrap_or_default());
        }
        let job = NewJob {
            marketplace: marketplace.to_owned(),
            kind: FOLLOW_CHANGE_JOB.into(),
            dedup_key: format!("{id}:{operation_id}{recheck}"),
            payload,
            run_at,
        };
        self.store.outbox_enqueue(&job, now).await?;
        self.outbox_ready.notify_one();
        Ok(())
    }

    /// Schedules the follow-up of `operation_id`, the marketplace's name for a change to `id`.
    pub(crate) async fn follow_change_later(
        &self,
        id: SubscriptionId,
        external: &ExternalRef,
        operation_id: &str,
    ) -> Result<(), StoreError> {
        let marketplace = external.marketplace.to_string();
        self.follow_operation_at(id, &marketplace, operation_id, None, self.clock.now())
            .await
    }

    /// One look at the operation behind `job`; applies the marketplace's state once it ended.
    async fn follow_change(&self, job: &QueueItem) -> Result<FollowStep, StoreError> {
        let (Some(id), Some(operation_id)) = (
            subscription_of(job),
            job.payload.get("operation_id").and_then(|v| v.as_str()),
        ) else {
            return Ok(FollowStep::Failed(ProviderError::Configuration(
                "follow-up job without subscription_id and operation_id".into(),
            )));
        };
        let subscription = self.store.get_subscription(id).await?;
        let Some(provider) = self.providers.get(&subscription.external.marketplace) else {
            return Ok(FollowStep::Failed(ProviderError::Configuration(format!(
                "no {} provider configured",
                subscription.external.marketplace
            ))));
        };
        let progress = provider
            .follow_change(&subscription.external, operation_id)
            .await;
        match progress {
            Ok(ChangeProgress::Running { poll_after }) if job.attempts < MAX_LOOKS => {
                Ok(FollowStep::Again(
                    time::Duration::try_from(poll_after).unwrap_or(time::Duration::SECOND),
                ))
            }
            Ok(ChangeProgress::Running { .. }) => {
                Ok(FollowStep::Failed(ProviderError::Configuration(format!(
                    "operation {operation_id} still running after {MAX_LOOKS} looks"
                ))))
            }
            Ok(ChangeProgress::Ended {
                succeeded,
                status,
                view,
            }) => {
                let why = job
                    .payload
                    .get("why")
                    .and_then(|w| serde_json::from_value::<Why>(w.clone()).ok());
                self.settle_change(
                    &subscription,
                    operation_id,
                    succeeded,
                    &status,
                    &view,
                    why.as_ref(),
                )
                .await?;
                Ok(FollowStep::Ended)
            }
            Err(error) => Ok(FollowStep::Failed(error)),
        }
    }

    /// Records how the operation ended, then applies the subscription as the marketplace has
    /// it (the same path its notifications take, so vendor webhooks fire). `why`: a marketplace
    /// change we answered (or declined), whose vendor webhooks carry its marker.
    pub(crate) async fn settle_change(
        &self,
        sub: &Subscription,
        operation_id: &str,
        succeeded: bool,
        status: &str,
        view: &MarketplaceView,
        why: Option<&Why>,
    ) -> Result<(), StoreError> {
        let source = format!("operation:{operation_id}");
        let kinds = differences(sub, view, operation_id, status);
        match why {
            Some(why) => {
                self.record_settled(sub, operation_id, status, why, view, !kinds.is_empty())
                    .await?
            }
            None => {
                self.record(
                    sub.id,
                    &source,
                    "vendor_change_ended",
                    status,
                    serde_json::json!({ "operation_id": operation_id, "succeeded": succeeded }),
                )
                .await?
            }
        }
        let marker = why.map(Why::marker);
        for kind in kinds {
            let event = MarketplaceEvent {
                subscription: sub.external.clone(),
                occurred_at: self.clock.now(),
                kind,
                free_trial: None,
                aliases: Vec::new(),
            };
            match apply_marked(self, &event, &source, marker.as_ref()).await {
                Ok(_) => {}
                Err(crate::apply::ApplyError::Store(e)) => return Err(e),
                Err(error) => {
                    tracing::warn!(subscription = %sub.id, %error, "applying a settled change failed")
                }
            }
        }
        Ok(())
    }

    /// One pass over a follow-up job, filed in the outbox.
    pub(crate) async fn run_follow(
        &self,
        job: &QueueItem,
        backoff: &Backoff,
    ) -> Result<FollowFiled, StoreError> {
        let step = self.follow_change(job).await?;
        self.finish_follow(job, step, backoff).await
    }

    /// Files the outcome of one follow-up pass in the outbox.
    async fn finish_follow(
        &self,
        job: &QueueItem,
        step: FollowStep,
        backoff: &Backoff,
    ) -> Result<FollowFiled, StoreError> {
        let now = self.clock.now();
        match step {
            FollowStep::Ended => {
                self.store.outbox_complete(job, now).await?;
                return Ok(FollowFiled::Done);
            }
            FollowStep::Again(after) => {
                self.store
                    .outbox_retry(job, "operation still running", now + after, now)
                    .await?
            }
            // Polls count as attempts, so the cap on looks, not the backoff's, ends the retries.
            FollowStep::Failed(error) if error.is_retryable() && job.attempts < MAX_LOOKS => {
                let retry_after = match &error {
                    ProviderError::Retryable { retry_after, .. } => *retry_after,
                    _ => None,
                };
                let at = now + backoff.delay(job.attempts, retry_after);
                tracing::warn!(job = %job.id, %error, retry_at = %at, "change follow-up will be retried");
                self.store
                    .outbox_retry(job, &error.to_string(), at, now)
                    .await?
            }
            FollowStep::Failed(error) => {
                tracing::error!(job = %job.id, %error, "change follow-up given up; reconciliation will catch up");
                if let Some(id) = subscription_of(job) {
                    let detail = serde_json::json!({ "error": error.to_string() });
                    self.record(
                        id,
                        "vendor",
                        "vendor_change_unfollowed",
                        &format!("given up: {error}"),
                        detail,
                    )
                    .await?;
                }
                self.store.outbox_bury(job, &error.to_string(), now).await?;
                return Ok(FollowFiled::Buried);
            }
        }
        Ok(FollowFiled::Again)
    }
}

/// The events that bring `sub` to the marketplace's `view` (status, plan, quantity).
fn differences(
    sub: &Subscription,
    view: &MarketplaceView,
    operation_id: &str,
    status: &str,
) -> Vec<EventKind> {
    let mut kinds = Vec::new();
    if let Some(theirs) = view.status
        && theirs != sub.status
        && let Ok(event) = lifecycle_towards(sub.status, theirs)
    {
        kinds.push(EventKind::Lifecycle {
            event,
            reason: Some(format!("operation {operation_id} {status}")),
        });
    }
    if let Some(plan_id) = view.plan_id.clone()
        && sub.plan_id.as_ref() != Some(&plan_id)
    {
        kinds.push(EventKind::PlanChanged { plan_id });
    }
    if let Some(quantity) = view.quantity
        && sub.quantity != Some(quantity)
    {
        kinds.push(EventKind::QuantityChanged { quantity });
    }
    kinds
}

fn subscription_of(job: &QueueItem) -> Option<SubscriptionId> {
    job.payload
        .get("subscription_id")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok())
}
