//! A provider that plays scripted messages, for the fulfillment rules without a wire format.

use std::sync::{
    Mutex,
    atomic::{AtomicUsize, Ordering},
};

use async_trait::async_trait;
use marketlink_core::{
    AuthenticatedMessage, Capabilities, ChangeAnswer, ChangeOutcome, ChangeProgress, Entitlement,
    ExternalRef, InboundMessage, LandingToken, Marketplace, MarketplaceEvent, MarketplaceProvider,
    PlanId, ProviderError, PulledMessage, ResolvedPurchase, UsageOutcome, UsageRecord,
};

use crate::harness::T0;

/// A provider whose messages are JSON scripts: `{"key", "kind", "events": [...], "find"}`.
/// With `"find": {"kind", "value"}` the events are about the subscription the directory knows
/// by that alias.
#[derive(Default)]
pub(crate) struct Scripted {
    /// Interpret failures still to produce, per message key: ("retry" | "configuration" |
    /// "rejected" | "permanent", count).
    pub(crate) failures: Mutex<Vec<(String, &'static str, usize)>>,
    pub(crate) responses: Mutex<Vec<(String, bool)>>,
    pub(crate) queue: Mutex<Vec<PulledMessage>>,
    pub(crate) acked: Mutex<Vec<String>>,
    pub(crate) interpret_calls: AtomicUsize,
    pub(crate) cancelled: Mutex<Vec<String>>,
    /// Cancellations answer "in progress" with this operation (like Microsoft's DELETE).
    pub(crate) cancel_operation: Mutex<Option<String>>,
    /// What following a change says, first to last (Microsoft's operation, then the
    /// subscription read back).
    pub(crate) follow_script: Mutex<Vec<ChangeProgress>>,
    /// Waits for the vendor to activate (like Microsoft's), so a claim queues an activation.
    pub(crate) vendor_activates: bool,
    /// Resolve calls made: tokens `good-…` resolve, `expired` has expired, `busy` is
    /// throttled, anything else is invalid.
    pub(crate) resolve_calls: AtomicUsize,
}

impl Scripted {
    fn scripted_failure(&self, key: &str) -> Option<ProviderError> {
        let mut failures = self.failures.lock().unwrap();
        let entry = failures
            .iter_mut()
            .find(|(k, _, left)| k == key && *left > 0)?;
        entry.2 -= 1;
        Some(match entry.1 {
            "retry" => ProviderError::retryable("marketplace throttled"),
            "configuration" => {
                ProviderError::Configuration("product prod-b is not configured".into())
            }
            "rejected" => ProviderError::Rejected {
                code: "malformed".into(),
                message: "the message names no subscription".into(),
            },
            _ => ProviderError::NotFound("operation".into()),
        })
    }
}

fn unsupported(operation: &'static str) -> ProviderError {
    ProviderError::Unsupported {
        marketplace: Marketplace::parse("test").unwrap(),
        operation,
    }
}

#[async_trait]
impl MarketplaceProvider for Scripted {
    fn marketplace(&self) -> Marketplace {
        Marketplace::parse("test").unwrap()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            vendor_activates: self.vendor_activates,
            vendor_changes_plan: false,
            vendor_cancels: true,
        }
    }
    async fn resolve(&self, token: &LandingToken) -> Result<ResolvedPurchase, ProviderError> {
        self.resolve_calls.fetch_add(1, Ordering::SeqCst);
        // Long enough for concurrent landings of one token to overlap.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        match token.token.as_str() {
            good if good.starts_with("good-") => Ok(ResolvedPurchase {
                subscription: crate::harness::external(good),
                plan_id: Some(PlanId::new("basic")),
                quantity: None,
                free_trial: false,
                term: None,
                display_name: None,
                buyer_email: None,
                aliases: vec![],
                parties: vec![],
            }),
            "expired" => Err(ProviderError::ExpiredToken("the token expired".into())),
            "busy" => Err(ProviderError::retryable("marketplace throttled")),
            _ => Err(ProviderError::InvalidToken("unknown token".into())),
        }
    }
    async fn activate(
        &self,
        _: &ExternalRef,
        _: Option<&PlanId>,
        _: Option<u32>,
    ) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn change_plan(
        &self,
        _: &ExternalRef,
        _: &PlanId,
    ) -> Result<ChangeOutcome, ProviderError> {
        Err(unsupported("change_plan"))
    }
    async fn change_quantity(
        &self,
        _: &ExternalRef,
        _: u32,
    ) -> Result<ChangeOutcome, ProviderError> {
        Err(unsupported("change_quantity"))
    }
    async fn cancel(&self, subscription: &ExternalRef) -> Result<ChangeOutcome, ProviderError> {
        self.cancelled
            .lock()
            .unwrap()
            .push(subscription.external_id.clone());
        Ok(match self.cancel_operation.lock().unwrap().clone() {
            Some(operation_id) => ChangeOutcome::InProgress { operation_id },
            None => ChangeOutcome::Done,
        })
    }
    async fn follow_change(
        &self,
        _: &ExternalRef,
        _: &str,
    ) -> Result<ChangeProgress, ProviderError> {
        let mut script = self.follow_script.lock().unwrap();
        if script.is_empty() {
            return Err(unsupported("follow_change"));
        }
        Ok(script.remove(0))
    }
    async fn report_usage(&self, _: &[UsageRecord]) -> Result<Vec<UsageOutcome>, ProviderError> {
        Err(unsupported("report_usage"))
    }
    async fn entitlements(&self, _: &ExternalRef) -> Result<Vec<Entitlement>, ProviderError> {
        Ok(vec![])
    }
    async fn authenticate(
        &self,
        message: &InboundMessage,
    ) -> Result<AuthenticatedMessage, ProviderError> {
        // A genuine message we cannot take: the reasons a provider gives for it.
        match message.header("x-refuse") {
            Some("configuration") => {
                return Err(ProviderError::Configuration(
                    "topic t not configured".into(),
                ));
            }
            Some("certificate") => {
                return Err(ProviderError::retryable("cannot fetch the certificate"));
            }
            Some("malformed") => {
                return Err(ProviderError::Rejected {
                    code: "MalformedMessage".into(),
                    message: "no action".into(),
                });
            }
            _ => {}
        }
        if message.header("x-signature") != Some("valid") {
            return Err(ProviderError::Unauthenticated("bad signature".into()));
        }
        let payload: serde_json::Value = serde_json::from_slice(&message.body)
            .map_err(|e| ProviderError::Unauthenticated(e.to_string()))?;
        Ok(AuthenticatedMessage {
            marketplace: self.marketplace(),
            dedup_key: payload["key"].as_str().unwrap_or_default().to_owned(),
            kind: payload["kind"].as_str().unwrap_or_default().to_owned(),
            received_at: T0,
            payload,
        })
    }
    async fn interpret(
        &self,
        message: &AuthenticatedMessage,
        directory: &dyn marketlink_core::SubscriptionDirectory,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        self.interpret_calls.fetch_add(1, Ordering::SeqCst);
        if let Some(failure) = self.scripted_failure(&message.dedup_key) {
            return Err(failure);
        }
        let mut events: Vec<MarketplaceEvent> =
            serde_json::from_value(message.payload["events"].clone()).unwrap();
        if let Some(alias) = message.payload.get("find") {
            let alias: marketlink_core::Alias = serde_json::from_value(alias.clone()).unwrap();
            let Some(found) = directory.find(&self.marketplace(), &alias).await? else {
                return Err(ProviderError::NotFound(format!(
                    "no subscription is {alias:?}"
                )));
            };
            for event in &mut events {
                event.subscription = found.clone();
            }
        }
        Ok(events)
    }
    async fn respond_to_change(
        &self,
        _: &ExternalRef,
        operation_id: &str,
        accept: bool,
        _: Option<time::OffsetDateTime>,
    ) -> Result<ChangeAnswer, ProviderError> {
        // "late…": the marketplace settled it before our answer (Microsoft's auto-accept).
        if operation_id.starts_with("late") {
            return Ok(ChangeAnswer::SettledWithout {
                reason: "operation already Succeeded".into(),
            });
        }
        self.responses
            .lock()
            .unwrap()
            .push((operation_id.into(), accept));
        Ok(ChangeAnswer::Taken)
    }
    async fn pull(&self, max: u32) -> Result<Vec<PulledMessage>, ProviderError> {
        let mut queue = self.queue.lock().unwrap();
        let n = queue.len().min(max as usize);
        Ok(queue.drain(..n).collect())
    }
    async fn ack(&self, receipt: &str) -> Result<(), ProviderError> {
        self.acked.lock().unwrap().push(receipt.into());
        Ok(())
    }
}
