//! The outbox worker's one pass: what we owe the marketplaces (activations, followed
//! changes), the vendor (webhooks) and buyers (verification mail), sent with retries; a
//! permanent refusal is kept visible (an activation's on the subscription as well).

use marketlink_core::{Lifecycle, SubscriptionId};
use marketlink_store::{QueueItem, StoreError};

use crate::{
    Engine,
    backoff::Backoff,
    follow::{FOLLOW_CHANGE_JOB, FollowFiled},
    onboarding::ACTIVATE_JOB,
    verification::VERIFY_EMAIL_JOB,
    webhooks::{DeliveryError, WEBHOOK_JOB},
};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxRun {
    pub done: usize,
    pub retried: usize,
    pub buried: usize,
}

impl OutboxRun {
    fn count(&mut self, filed: FollowFiled) {
        match filed {
            FollowFiled::Done => self.done += 1,
            FollowFiled::Again => self.retried += 1,
            FollowFiled::Buried => self.buried += 1,
        }
    }
}

impl Engine {
    pub async fn process_outbox(
        &self,
        limit: u32,
        backoff: &Backoff,
    ) -> Result<OutboxRun, StoreError> {
        let claimed = self
            .store
            .outbox_claim(self.clock.now(), time::Duration::minutes(2), limit, None)
            .await?;
        let mut run = OutboxRun::default();
        for job in claimed {
            match job.kind.as_str() {
                WEBHOOK_JOB => {
                    let sent = self.deliver(&job).await;
                    self.finish_delivery(&job, sent, "vendor webhook", backoff, &mut run)
                        .await?;
                }
                VERIFY_EMAIL_JOB => {
                    let sent = self.deliver_verification_mail(&job).await;
                    self.finish_delivery(&job, sent, "verification mail", backoff, &mut run)
                        .await?;
                }
                FOLLOW_CHANGE_JOB => run.count(self.run_follow(&job, backoff).await?),
                ACTIVATE_JOB => self.run_activation(&job, backoff, &mut run).await?,
                other => {
                    let reason = format!("unknown outbox job kind `{other}`");
                    self.store
                        .outbox_bury(&job, &reason, self.clock.now())
                        .await?;
                    run.buried += 1;
                }
            }
        }
        Ok(run)
    }

    /// Activates the subscription a job names; retried while the marketplace may still say
    /// yes, recorded as failed when it never will.
    async fn run_activation(
        &self,
        job: &QueueItem,
        backoff: &Backoff,
        run: &mut OutboxRun,
    ) -> Result<(), StoreError> {
        let result = match subscription_of(job) {
            Some(id) => self.activate(id).await,
            None => Err(marketlink_core::ProviderError::Configuration(
                "job payload has no subscription_id".into(),
            )),
        };
        match result {
            Ok(()) => {
                self.store.outbox_complete(job, self.clock.now()).await?;
                run.done += 1;
            }
            Err(error) if error.is_retryable() && !backoff.exhausted(job.attempts) => {
                let retry_after = match &error {
                    marketlink_core::ProviderError::Retryable { retry_after, .. } => *retry_after,
                    _ => None,
                };
                let at = self.clock.now() + backoff.delay(job.attempts, retry_after);
                tracing::warn!(job = %job.id, %error, retry_at = %at, "activation will be retried");
                self.store
                    .outbox_retry(job, &error.to_string(), at, self.clock.now())
                    .await?;
                run.retried += 1;
            }
            Err(error) => {
                tracing::error!(job = %job.id, %error, "activation failed for good");
                if let Some(id) = subscription_of(job) {
                    let now = self.clock.now();
                    let outcome = match self.store.apply_lifecycle(id, Lifecycle::Fail, now).await {
                        Ok(_) => "applied".to_owned(),
                        Err(e) => format!("refused: {e}"),
                    };
                    self.record(
                        id,
                        "vendor",
                        "lifecycle:fail",
                        &outcome,
                        serde_json::json!({ "reason": error.to_string() }),
                    )
                    .await?;
                }
                self.store
                    .outbox_bury(job, &error.to_string(), self.clock.now())
                    .await?;
                run.buried += 1;
            }
        }
        Ok(())
    }

    /// Files the outcome of sending a webhook or a mail (`what`): done, again later, or given
    /// up (an operator can replay or retry it from the portal).
    async fn finish_delivery(
        &self,
        job: &QueueItem,
        sent: Result<(), DeliveryError>,
        what: &str,
        backoff: &Backoff,
        run: &mut OutboxRun,
    ) -> Result<(), StoreError> {
        match sent {
            Ok(()) => {
                self.store.outbox_complete(job, self.clock.now()).await?;
                run.done += 1;
            }
            Err(DeliveryError::Retry(error, retry_after)) if !backoff.exhausted(job.attempts) => {
                let at = self.clock.now() + backoff.delay(job.attempts, retry_after);
                tracing::warn!(job = %job.id, %error, retry_at = %at, "{what} will be retried");
                self.store
                    .outbox_retry(job, &error, at, self.clock.now())
                    .await?;
                run.retried += 1;
            }
            Err(DeliveryError::Retry(error, _)) | Err(DeliveryError::Permanent(error)) => {
                tracing::error!(job = %job.id, %error, "{what} given up; replay or retry it from the admin portal once the cause is fixed");
                self.store
                    .outbox_bury(job, &error, self.clock.now())
                    .await?;
                run.buried += 1;
            }
        }
        Ok(())
    }
}

fn subscription_of(job: &QueueItem) -> Option<SubscriptionId> {
    job.payload
        .get("subscription_id")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok())
}
