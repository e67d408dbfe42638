//! The inbox worker's one pass: claim due messages, interpret them through their provider,
//! apply the events, and complete, retry or bury each message.
//!
//! What fails for a passing reason (the marketplace or our database) or for our own
//! configuration (a product, topic or provider not configured yet) is retried with backoff, so
//! it applies once the cause is gone or an operator fixed the configuration; it is buried, with
//! the reason, only when the backoff is exhausted. What can never apply (the marketplace refuses
//! it for good, a malformed message) is buried at once.

use marketlink_core::{AuthenticatedMessage, ProviderError};
use marketlink_store::QueueItem;

use crate::{Engine, apply::ApplyError, apply_event, backoff::Backoff};

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboxRun {
    pub processed: usize,
    pub retried: usize,
    pub buried: usize,
}

enum Failure {
    Retry(String, Option<std::time::Duration>),
    Permanent(String),
}

impl From<&ProviderError> for Failure {
    fn from(error: &ProviderError) -> Self {
        match error {
            ProviderError::Retryable { retry_after, .. } => {
                Failure::Retry(error.to_string(), *retry_after)
            }
            // Ours to fix, and fixed without the marketplace sending it again.
            ProviderError::Configuration(_) => Failure::Retry(error.to_string(), None),
            _ => Failure::Permanent(error.to_string()),
        }
    }
}

impl From<ApplyError> for Failure {
    fn from(error: ApplyError) -> Self {
        match &error {
            ApplyError::Provider(provider) => provider.into(),
            ApplyError::Store(_) => Failure::Retry(error.to_string(), None),
        }
    }
}

impl Engine {
    /// Processes up to `limit` due inbox messages.
    pub async fn process_inbox(&self, limit: u32, backoff: &Backoff) -> anyhow::Result<InboxRun> {
        let now = self.clock.now();
        let claimed = self
            .store
            .inbox_claim(now, time::Duration::minutes(2), limit)
            .await?;
        let mut run = InboxRun::default();
        for item in claimed {
            match self.process_item(&item).await {
                Ok(()) => {
                    self.store.inbox_complete(&item, self.clock.now()).await?;
                    run.processed += 1;
                }
                Err(Failure::Retry(error, retry_after)) if !backoff.exhausted(item.attempts) => {
                    let at = self.clock.now() + backoff.delay(item.attempts, retry_after);
                    tracing::warn!(inbox_id = %item.id, attempts = item.attempts, %error, retry_at = %at, "will retry marketplace message");
                    self.store
                        .inbox_retry(&item, &error, at, self.clock.now())
                        .await?;
                    run.retried += 1;
                }
                Err(failure) => {
                    let error = match failure {
                        Failure::Retry(error, _) => {
                            format!("gave up after {} attempts: {error}", item.attempts)
                        }
                        Failure::Permanent(error) => error,
                    };
                    tracing::error!(inbox_id = %item.id, attempts = item.attempts, %error, "marketplace message could not be applied; kept as dead");
                    self.store
                        .inbox_bury(&item, &error, self.clock.now())
                        .await?;
                    run.buried += 1;
                }
            }
        }
        Ok(run)
    }

    async fn process_item(&self, item: &QueueItem) -> Result<(), Failure> {
        let message: AuthenticatedMessage = serde_json::from_value(item.payload.clone())
            .map_err(|e| Failure::Permanent(format!("stored message is unreadable: {e}")))?;
        let provider = self.providers.get(&message.marketplace).ok_or_else(|| {
            // Stored while the marketplace was configured: it may be configured again.
            Failure::Retry(
                format!("no provider configured for {}", message.marketplace),
                None,
            )
        })?;
        let directory = crate::directory::StoreDirectory { store: &self.store };
        let events = provider
            .interpret(&message, &directory)
            .await
            .map_err(|e| Failure::from(&e))?;
        let source = format!("inbox:{}", item.id);
        for event in &events {
            apply_event(self, event, &source).await?;
        }
        Ok(())
    }
}
