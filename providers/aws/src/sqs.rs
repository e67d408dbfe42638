//! SQS: long-poll the configured queues, delete after the inbox stored a message, extend the
//! visibility of a message still being worked on.

use marketlink_core::{InboundMessage, ProviderError, PulledMessage};

use crate::{AwsProvider, CHANNEL_SQS, errors::AwsFailure};

/// SQS returns at most 10 messages per ReceiveMessage.
const MAX_PER_RECEIVE: u32 = 10;

fn split_receipt(receipt: &str) -> Result<(&str, &str), ProviderError> {
    receipt
        .split_once('|')
        .filter(|(q, h)| !q.is_empty() && !h.is_empty())
        .ok_or_else(|| ProviderError::Rejected {
            code: "InvalidReceipt".into(),
            message: "an AWS receipt is \"<queue-url>|<receipt-handle>\"".into(),
        })
}

impl AwsProvider {
    /// Receives up to `max` messages from the configured queues. Queues are polled one after
    /// the other; once one returned messages, the rest are polled without waiting.
    pub(crate) async fn pull_messages(
        &self,
        max: u32,
    ) -> Result<Vec<PulledMessage>, ProviderError> {
        let mut out = Vec::new();
        let mut first_error = None;
        for queue_url in &self.config.sqs_queue_urls {
            let remaining = max.saturating_sub(out.len() as u32);
            if remaining == 0 {
                break;
            }
            let wait = if out.is_empty() {
                self.config.sqs_wait_time_secs
            } else {
                0
            };
            let result = self
                .retry
                .run("ReceiveMessage", || async {
                    self.sqs
                        .receive_message()
                        .queue_url(queue_url)
                        .max_number_of_messages(remaining.min(MAX_PER_RECEIVE) as i32)
                        .wait_time_seconds(wait as i32)
                        .set_visibility_timeout(
                            self.config.sqs_visibility_timeout_secs.map(|v| v as i32),
                        )
                        .send()
                        .await
                        .map_err(AwsFailure::from_sdk)
                })
                .await;
            match result {
                Ok(received) => {
                    for m in received.messages() {
                        let (Some(body), Some(handle)) = (m.body(), m.receipt_handle()) else {
                            continue;
                        };
                        out.push(PulledMessage {
                            message: InboundMessage {
                                channel: CHANNEL_SQS.to_owned(),
                                headers: Vec::new(),
                                body: body.as_bytes().to_vec(),
                            },
                            receipt: format!("{queue_url}|{handle}"),
                        });
                    }
                }
                Err(f) => {
                    tracing::warn!(queue_url, code = %f.code, "ReceiveMessage failed");
                    first_error.get_or_insert(f.into_provider_error("ReceiveMessage"));
                }
            }
        }
        match first_error {
            Some(e) if out.is_empty() => Err(e),
            _ => Ok(out),
        }
    }

    /// DeleteMessage for a receipt returned by `pull`.
    pub(crate) async fn delete_message(&self, receipt: &str) -> Result<(), ProviderError> {
        let (queue_url, handle) = split_receipt(receipt)?;
        self.retry
            .run("DeleteMessage", || async {
                self.sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .map_err(AwsFailure::from_sdk)
            })
            .await
            .map_err(|f| f.into_provider_error("DeleteMessage"))?;
        Ok(())
    }

    /// Keeps a pulled message invisible for `secs` more seconds (ChangeMessageVisibility), for
    /// work that outlasts the queue's visibility timeout. `0` makes it visible again at once.
    pub async fn extend_visibility(&self, receipt: &str, secs: u32) -> Result<(), ProviderError> {
        let (queue_url, handle) = split_receipt(receipt)?;
        let secs = i32::try_from(secs.min(43_200)).unwrap_or(43_200);
        self.retry
            .run("ChangeMessageVisibility", || async {
                self.sqs
                    .change_message_visibility()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .visibility_timeout(secs)
                    .send()
                    .await
                    .map_err(AwsFailure::from_sdk)
            })
            .await
            .map_err(|f| f.into_provider_error("ChangeMessageVisibility"))?;
        Ok(())
    }
}
