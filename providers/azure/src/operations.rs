//! SaaS Fulfillment API v2, operations: the long-running changes behind a PATCH or DELETE and
//! behind every webhook. Reading them, waiting for them, and answering a marketplace-initiated
//! change (Success/Failure) within Microsoft's 10 seconds.

use std::time::Duration;

use marketlink_core::{ChangeAnswer, ChangeOutcome, ChangeProgress, ExternalRef, ProviderError};
use reqwest::{Method, StatusCode};
use serde_json::json;
use time::OffsetDateTime;

use crate::{
    AzureProvider,
    http::Reply,
    model::{OperationList, OperationStatus, SaasOperation},
    survey::view_of,
};

impl AzureProvider {
    /// Reads one operation (`GET .../operations/{id}`).
    pub async fn operation(
        &self,
        subscription_id: &str,
        operation_id: &str,
    ) -> Result<SaasOperation, ProviderError> {
        let url = self.api.url(&[
            "saas",
            "subscriptions",
            subscription_id,
            "operations",
            operation_id,
        ])?;
        let what = "get operation";
        self.api
            .send_ok(Method::GET, url, None, what)
            .await?
            .parse(what)
    }

    /// Operations still pending on a subscription (`GET .../operations`), e.g. a Reinstate.
    pub async fn pending_operations(
        &self,
        subscription: &ExternalRef,
    ) -> Result<Vec<SaasOperation>, ProviderError> {
        let url = self.api.url(&[
            "saas",
            "subscriptions",
            &subscription.external_id,
            "operations",
        ])?;
        let what = "list pending operations";
        let reply = self.api.send_ok(Method::GET, url, None, what).await?;
        if reply.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Vec::new());
        }
        Ok(reply.parse::<OperationList>(what)?.operations)
    }

    /// Polls an operation every `operation_poll_interval_ms` until it is Succeeded, Failed or
    /// Conflict, or `timeout` passes; returns the last status seen (still `InProgress` or
    /// `NotStarted` on timeout: check [`OperationStatus::is_terminal`]).
    pub async fn wait_for_operation(
        &self,
        subscription: &ExternalRef,
        operation_id: &str,
        timeout: Option<Duration>,
    ) -> Result<OperationStatus, ProviderError> {
        let timeout = timeout.unwrap_or_else(|| self.config.operation_timeout());
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let op = self
                .operation(&subscription.external_id, operation_id)
                .await?;
            let status = op.status();
            if status.is_terminal() || tokio::time::Instant::now() >= deadline {
                return Ok(status);
            }
            let wait = self
                .config
                .poll_interval()
                .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            tokio::time::sleep(wait).await;
        }
    }

    /// One look at a change we started (the operation behind its `Operation-Location`); once it
    /// has ended, the subscription is read back, since that, not the operation, is what
    /// Microsoft will bill. Microsoft: poll "every several seconds" until Succeeded, Failed or
    /// Conflict (`../shared/specs/azure-details.md`, Operations).
    pub async fn follow_operation(
        &self,
        subscription: &ExternalRef,
        operation_id: &str,
    ) -> Result<ChangeProgress, ProviderError> {
        let op = self
            .operation(&subscription.external_id, operation_id)
            .await?;
        let status = op.status();
        if !status.is_terminal() {
            return Ok(ChangeProgress::Running {
                poll_after: self.config.poll_interval(),
            });
        }
        let current = self.subscription(&subscription.external_id).await?;
        Ok(ChangeProgress::Ended {
            succeeded: status == OperationStatus::Succeeded,
            status: status.as_str().to_owned(),
            view: Box::new(view_of(&current)),
        })
    }

    /// Refuses a Reinstate we cannot honour. Microsoft's webhook page: there is nothing to
    /// PATCH for a Reinstate; a publisher that cannot reinstate deletes the subscription. This
    /// therefore cancels the subscription (DELETE) and returns the cancellation's operation.
    pub async fn refuse_reinstate(
        &self,
        subscription: &ExternalRef,
    ) -> Result<ChangeOutcome, ProviderError> {
        self.delete_subscription(subscription).await
    }

    /// A change accepted for processing: the operation to follow, or done at once.
    pub(crate) fn operation_outcome(
        &self,
        reply: Reply,
        what: &str,
    ) -> Result<ChangeOutcome, ProviderError> {
        match reply.status {
            StatusCode::ACCEPTED | StatusCode::OK => {
                let location = reply
                    .headers
                    .get("operation-location")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                match location.as_deref().and_then(operation_id_from_location) {
                    Some(operation_id) => Ok(ChangeOutcome::InProgress { operation_id }),
                    // 200 without an operation: applied synchronously.
                    None if reply.status == StatusCode::OK => Ok(ChangeOutcome::Done),
                    None => Err(ProviderError::retryable(format!(
                        "{what}: 202 without a usable Operation-Location ({location:?})"
                    ))),
                }
            }
            _ => Err(reply.into_error(what)),
        }
    }

    /// PATCHes the operation with `Success` or `Failure`, if Microsoft still waits for it.
    /// Microsoft gives us 10 s from the webhook's arrival (`answer_by`), then accepts the change
    /// on its own and sends no second webhook (azure-details.md, Operations): past `answer_by`
    /// nothing is sent, and the PATCH's timeout is the time left. A 409 means the operation is
    /// settled already (auto-accepted, or answered before): when it ended the way we wanted
    /// this counts as taken, otherwise the caller must read back what Microsoft settled on.
    pub(crate) async fn answer_operation(
        &self,
        subscription: &ExternalRef,
        operation_id: &str,
        accept: bool,
        answer_by: Option<OffsetDateTime>,
    ) -> Result<ChangeAnswer, ProviderError> {
        let mut timeout = Duration::from_secs(self.config.change_ack_timeout_secs);
        if let Some(deadline) = answer_by {
            let left = deadline - self.clock.now();
            if left <= time::Duration::ZERO {
                return Ok(ChangeAnswer::SettledWithout {
                    reason: format!(
                        "Microsoft's window to answer operation {operation_id} closed before \
                         our answer; it accepts the change on its own"
                    ),
                });
            }
            timeout = timeout.min(Duration::try_from(left).unwrap_or(timeout));
        }
        let url = self.api.url(&[
            "saas",
            "subscriptions",
            &subscription.external_id,
            "operations",
            operation_id,
        ])?;
        let what = "update operation";
        let body = json!({ "status": if accept { "Success" } else { "Failure" } });
        let reply = self
            .api
            .send(Method::PATCH, url, Some(&body), &[], Some(timeout), what)
            .await?;
        if reply.status.is_success() {
            return Ok(ChangeAnswer::Taken);
        }
        if reply.status == StatusCode::CONFLICT {
            let op = self
                .operation(&subscription.external_id, operation_id)
                .await?;
            let status = op.status();
            let wanted = if accept {
                OperationStatus::Succeeded
            } else {
                OperationStatus::Failed
            };
            if status == wanted {
                return Ok(ChangeAnswer::Taken);
            }
            return Ok(ChangeAnswer::SettledWithout {
                reason: format!(
                    "operation {operation_id} was already {} when we answered (we wanted to {})",
                    status.as_str(),
                    if accept { "accept" } else { "refuse" }
                ),
            });
        }
        Err(reply.into_error(what))
    }
}

/// The operation id in `.../operations/{id}?api-version=...`.
fn operation_id_from_location(location: &str) -> Option<String> {
    let path = location.split(['?', '#']).next()?;
    let mut segments = path.trim_end_matches('/').rsplit('/');
    let id = segments.next()?;
    (segments.next()? == "operations" && !id.is_empty()).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_location_parsing() {
        assert_eq!(
            operation_id_from_location(
                "https://marketplaceapi.microsoft.com/api/saas/subscriptions/s1/operations/op-1?api-version=2018-08-31"
            )
            .as_deref(),
            Some("op-1")
        );
        assert_eq!(
            operation_id_from_location("https://x/api/saas/subscriptions/s1"),
            None
        );
    }
}
