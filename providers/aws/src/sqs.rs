//! SQS: long-poll the configured queues, delete after the inbox stored a message, extend the
//! visibility of a message still being worked on. Each queue is called in the region its URL
//! names: the SDK sends a call to the endpoint of its client's region, not to the queue URL's
//! host, so a queue in another region needs a client of its own.

use std::collections::HashMap;

use marketlink_core::{InboundMessage, ProviderError, PulledMessage};

use crate::{AwsProvider, CHANNEL_SQS, config::AwsConfig, errors::AwsFailure};

/// The region an SQS queue URL names, for queues on AWS hosts:
/// `https://sqs.<region>.amazonaws.com/<account>/<name>` (also `sqs-fips.`, `.amazonaws.com.cn`
/// and VPC endpoints `vpce-….sqs.<region>.vpce.amazonaws.com`), and the legacy
/// `https://<region>.queue.amazonaws.com/…` and `https://queue.amazonaws.com/…` (us-east-1).
/// `None` for any other host (the sandbox, a proxy): such a queue keeps the configured region.
pub(crate) fn queue_region(queue_url: &str) -> Option<String> {
    let url = url::Url::parse(queue_url).ok()?;
    let host = url.host_str()?.to_ascii_lowercase();
    let base = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let labels: Vec<&str> = base.split('.').collect();
    let region = match labels.as_slice() {
        ["queue"] => "us-east-1",
        [region, "queue"] => region,
        _ => {
            let at = labels
                .iter()
                .position(|l| *l == "sqs" || *l == "sqs-fips")?;
            labels.get(at + 1)?
        }
    };
    let valid = !region.is_empty()
        && region.contains('-')
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    valid.then(|| region.to_owned())
}

/// One SQS client per region among the configured queues.
#[derive(Debug, Clone)]
pub(crate) struct SqsClients {
    /// The configured region's: queues on other hosts, and the fallback.
    default: aws_sdk_sqs::Client,
    by_region: HashMap<String, aws_sdk_sqs::Client>,
}

impl SqsClients {
    /// Builds a client (with `client(region)`) for the configured region and for each region
    /// named by a configured queue URL.
    pub fn new(config: &AwsConfig, client: impl Fn(&str) -> aws_sdk_sqs::Client) -> Self {
        let mut by_region = HashMap::new();
        for region in config.sqs_queue_urls.iter().filter_map(|u| queue_region(u)) {
            if region != config.region && !by_region.contains_key(&region) {
                let built = client(&region);
                by_region.insert(region, built);
            }
        }
        Self {
            default: client(&config.region),
            by_region,
        }
    }

    /// The client to call `queue_url` with.
    pub fn for_queue(&self, queue_url: &str) -> &aws_sdk_sqs::Client {
        queue_region(queue_url)
            .and_then(|region| self.by_region.get(&region))
            .unwrap_or(&self.default)
    }
}

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
                        .for_queue(queue_url)
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
                    .for_queue(queue_url)
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
                    .for_queue(queue_url)
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use marketlink_core::SystemClock;

    use super::*;

    #[test]
    fn the_region_comes_from_the_queue_url() {
        let region = |url| queue_region(url);
        assert_eq!(
            region("https://sqs.eu-west-1.amazonaws.com/111122223333/aws-mp-events").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region("https://sqs-fips.us-gov-west-1.amazonaws.com/1/q").as_deref(),
            Some("us-gov-west-1")
        );
        assert_eq!(
            region("https://sqs.cn-north-1.amazonaws.com.cn/1/q").as_deref(),
            Some("cn-north-1")
        );
        assert_eq!(
            region("https://vpce-0abc-1234.sqs.ap-southeast-2.vpce.amazonaws.com/1/q").as_deref(),
            Some("ap-southeast-2")
        );
        assert_eq!(
            region("https://ap-northeast-1.queue.amazonaws.com/1/q").as_deref(),
            Some("ap-northeast-1")
        );
        assert_eq!(
            region("https://queue.amazonaws.com/1/q").as_deref(),
            Some("us-east-1")
        );
        // Custom endpoints (the sandbox, a proxy) name no region.
        assert_eq!(region("http://127.0.0.1:9090/111122223333/q"), None);
        assert_eq!(region("https://sqs.example.com/1/q"), None);
        assert_eq!(region("https://sqs.amazonaws.com.evil.io/1/q"), None);
        assert_eq!(region("not a url"), None);
    }

    #[test]
    fn each_queue_is_called_with_a_client_of_its_region() {
        let config: AwsConfig = serde_json::from_value(serde_json::json!({
            "region": "us-west-2",
            "credentials": {"access_key_id": "AKIA", "secret_access_key": "s"},
            "sqs_queue_urls": [
                "https://sqs.eu-west-1.amazonaws.com/111122223333/a",
                "https://sqs.eu-west-1.amazonaws.com/111122223333/b",
                "https://sqs.us-west-2.amazonaws.com/111122223333/c",
                "http://127.0.0.1:9090/111122223333/d"
            ],
            "products": [{"product_code": "abc"}]
        }))
        .unwrap();
        let provider = AwsProvider::new(config, Arc::new(SystemClock)).unwrap();
        let region = |url: &str| {
            provider
                .sqs
                .for_queue(url)
                .config()
                .region()
                .map(|r| r.to_string())
        };
        assert_eq!(
            region("https://sqs.eu-west-1.amazonaws.com/111122223333/a").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region("https://sqs.us-west-2.amazonaws.com/111122223333/c").as_deref(),
            Some("us-west-2")
        );
        // A custom endpoint keeps the configured region.
        assert_eq!(
            region("http://127.0.0.1:9090/111122223333/d").as_deref(),
            Some("us-west-2")
        );
        // One client per region: eu-west-1 besides the configured us-west-2.
        assert_eq!(provider.sqs.by_region.len(), 1);
        // Entitlement and agreement calls stay in us-east-1.
        assert_eq!(
            provider
                .entitlement
                .config()
                .region()
                .map(|r| r.to_string())
                .as_deref(),
            Some("us-east-1")
        );
        assert_eq!(
            provider
                .agreement
                .config()
                .region()
                .map(|r| r.to_string())
                .as_deref(),
            Some("us-east-1")
        );
        assert_eq!(
            provider
                .metering
                .config()
                .region()
                .map(|r| r.to_string())
                .as_deref(),
            Some("us-west-2")
        );
    }
}
