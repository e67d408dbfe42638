//! Taking in what marketplaces send: authenticate, store once, acknowledge.

use marketlink_core::{InboundMessage, ProviderError};
use marketlink_store::{InboxInsert, StoreError};
use uuid::Uuid;

use crate::Engine;

/// What became of a received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Stored for processing.
    Stored(Uuid),
    /// Already stored from an earlier delivery; nothing to do.
    Duplicate(Uuid),
}

/// Why a message was not taken. Marketplaces retry on 5xx only (SNS over HTTP never retries a
/// 4xx), so only a message at fault is refused for good: one we could not take for our own
/// reasons must come back.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("no provider is configured for marketplace `{0}`")]
    UnknownMarketplace(String),
    /// Forged, tampered, expired or misaddressed: the sender should not retry.
    #[error("rejected: {0}")]
    Rejected(String),
    /// Authentic enough to read, but not a message we can ever understand: not retried.
    #[error("malformed: {0}")]
    Malformed(String),
    /// Genuine, but our configuration cannot take it yet (an unknown topic or product): the
    /// sender should retry, and will succeed once an operator fixes the configuration.
    #[error(
        "marketlink is not configured to take this message yet ({0}); it is taken once the configuration is fixed"
    )]
    NotConfigured(String),
    /// We could not check or store it right now; the sender should retry.
    #[error("temporarily unable to accept the message: {0}")]
    Unavailable(String),
}

impl Engine {
    /// Authenticates a message from `marketplace` and stores it in the inbox. Answer the
    /// marketplace with success only after this returns `Ok`: the message is then durable.
    pub async fn receive(
        &self,
        marketplace: &str,
        message: &InboundMessage,
    ) -> Result<Received, ReceiveError> {
        let provider = self
            .providers
            .by_name(marketplace)
            .ok_or_else(|| ReceiveError::UnknownMarketplace(marketplace.to_owned()))?;
        let authenticated = provider.authenticate(message).await.map_err(|error| {
            let refused = ReceiveError::from(error);
            match &refused {
                ReceiveError::Unavailable(_) => {}
                ReceiveError::NotConfigured(_) => {
                    tracing::error!(%marketplace, channel = %message.channel, error = %refused, "inbound message refused until the configuration is fixed");
                }
                _ => {
                    tracing::warn!(%marketplace, channel = %message.channel, error = %refused, "rejected inbound message");
                }
            }
            refused
        })?;
        let now = self.clock.now();
        let inserted =
            self.store
                .inbox_insert(&authenticated, now)
                .await
                .map_err(|e: StoreError| {
                    tracing::error!(error = ?e, "cannot store inbound message");
                    ReceiveError::Unavailable("storage unavailable".into())
                })?;
        Ok(match inserted {
            InboxInsert::Inserted(id) => {
                tracing::info!(%marketplace, kind = %authenticated.kind, key = %authenticated.dedup_key, inbox_id = %id, "stored marketplace message");
                self.inbox_ready.notify_one();
                Received::Stored(id)
            }
            InboxInsert::Duplicate(id) => {
                tracing::info!(%marketplace, key = %authenticated.dedup_key, "duplicate delivery ignored");
                Received::Duplicate(id)
            }
        })
    }

    /// Drains queues the providers poll (SQS). A message is deleted from its queue only once
    /// it is durably in the inbox (or recognised as a duplicate). One that fails
    /// authentication stays on the queue, so the queue's redrive policy moves it to its
    /// dead-letter queue for inspection; one we could not store comes back later. Returns how
    /// many messages were stored.
    pub async fn pull_once(&self, max_per_provider: u32) -> usize {
        let mut stored = 0;
        for provider in self.providers.iter() {
            let marketplace = provider.marketplace();
            let pulled = match provider.pull(max_per_provider).await {
                Ok(pulled) => pulled,
                Err(error) => {
                    tracing::warn!(%marketplace, %error, "cannot poll notification queue");
                    continue;
                }
            };
            for item in pulled {
                match self.receive(marketplace.as_str(), &item.message).await {
                    Ok(received) => {
                        if let Received::Stored(_) = received {
                            stored += 1;
                        }
                        if let Err(error) = provider.ack(&item.receipt).await {
                            // Harmless: the message returns and is recognised as a duplicate.
                            tracing::warn!(%marketplace, %error, "cannot delete message from queue");
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%marketplace, %error, "queue message left on its queue");
                    }
                }
            }
        }
        stored
    }
}

impl From<ProviderError> for ReceiveError {
    fn from(error: ProviderError) -> Self {
        match error {
            ProviderError::Retryable { .. } => Self::Unavailable(error.to_string()),
            ProviderError::Configuration(why) => Self::NotConfigured(why),
            ProviderError::Rejected { .. } => Self::Malformed(error.to_string()),
            other => Self::Rejected(other.to_string()),
        }
    }
}
