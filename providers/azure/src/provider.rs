//! [`AzureProvider`]: the `MarketplaceProvider` for Microsoft's commercial marketplace.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use marketlink_core::{
    AuthenticatedMessage, Capabilities, ChangeOutcome, Clock, Entitlement, EntitlementValue,
    EventKind, ExternalRef, InboundEndpoint, InboundMessage, LandingToken, Lifecycle, Marketplace,
    MarketplaceEvent, MarketplaceProvider, PlanId, ProviderError, ResolvedPurchase, UsageOutcome,
    UsageRecord,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    client::ApiClient,
    config::AzureConfig,
    http::build_client,
    jwt::{JwksCache, JwksSource},
    metering,
    model::{
        AvailablePlan, OperationAction, OperationList, OperationStatus, PlanList, ResolveResponse,
        SaasOperation, SaasSubscription, SubscriptionPage,
    },
    token::TokenSource,
    webhook,
};

/// The endpoints the web front end mounts for Azure.
static ENDPOINTS: [InboundEndpoint; 1] = [InboundEndpoint {
    path: "/azure/webhook",
    channel: webhook::CHANNEL,
}];

/// The Microsoft commercial marketplace adapter. Cheap to share (`Arc`); holds the HTTP client,
/// the cached API token and the cached webhook signing keys.
pub struct AzureProvider {
    pub(crate) api: ApiClient,
    pub(crate) config: Arc<AzureConfig>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) jwks: JwksCache,
    /// Entra sign-in for buyers on the landing page, once discovered.
    pub(crate) buyer_sign_in: Option<Arc<dyn marketlink_core::BuyerSignIn>>,
}

impl std::fmt::Debug for AzureProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureProvider")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AzureProvider {
    /// Requires buyers to sign in with `sign_in` before their landing token is resolved.
    pub fn with_buyer_sign_in(mut self, sign_in: Arc<dyn marketlink_core::BuyerSignIn>) -> Self {
        self.buyer_sign_in = Some(sign_in);
        self
    }

    /// Builds the adapter; no network call is made until first use.
    pub fn new(config: AzureConfig, clock: Arc<dyn Clock>) -> Result<Self, ProviderError> {
        config
            .validate()
            .map_err(|e| ProviderError::Configuration(e.to_string()))?;
        let ca = config
            .extra_ca_pem_bytes()
            .map_err(|e| ProviderError::Configuration(e.to_string()))?;
        let http = build_client(ca.as_deref(), Duration::from_secs(config.http_timeout_secs))?;
        let config = Arc::new(config);
        let source = match &config.jwks_url {
            Some(url) => JwksSource::Url(url.clone()),
            None => JwksSource::Discovery(config.discovery_url()),
        };
        let jwks = JwksCache::new(
            http.clone(),
            source,
            clock.clone(),
            Duration::from_secs(config.jwks_min_refetch_secs),
            Duration::from_secs(config.jwks_max_age_secs),
        );
        Ok(Self {
            api: ApiClient {
                config: config.clone(),
                tokens: TokenSource::new(http.clone(), config.clone(), clock.clone()),
                http,
            },
            config,
            clock,
            jwks,
            buyer_sign_in: None,
        })
    }

    pub fn config(&self) -> &AzureConfig {
        &self.config
    }

    /// The HTTP client this adapter uses (trusting `extra_ca_pem`), e.g. for
    /// [`crate::oidc::OidcClient::discover`] against the same authority.
    pub fn http_client(&self) -> reqwest::Client {
        self.api.http.clone()
    }

    /// How many times the webhook JWKS was downloaded (metrics, tests).
    pub fn jwks_fetch_count(&self) -> u64 {
        self.jwks.fetch_count()
    }

    /// Reads a subscription (`GET /saas/subscriptions/{id}`).
    pub async fn subscription(&self, id: &str) -> Result<SaasSubscription, ProviderError> {
        let url = self.api.url(&["saas", "subscriptions", id])?;
        let what = "get subscription";
        self.api
            .send_ok(Method::GET, url, None, what)
            .await?
            .parse(what)
    }

    /// Every subscription of the publisher, following `@nextLink` pages (reconciliation).
    pub async fn list_subscriptions(&self) -> Result<Vec<SaasSubscription>, ProviderError> {
        let what = "list subscriptions";
        let mut url = self.api.url(&["saas", "subscriptions"])?;
        let mut out = Vec::new();
        // A bound against a service that keeps handing out the same link.
        for _ in 0..10_000 {
            let reply = self
                .api
                .send_ok(Method::GET, url.clone(), None, what)
                .await?;
            if reply.body.iter().all(u8::is_ascii_whitespace) {
                break;
            }
            let page: SubscriptionPage = reply.parse(what)?;
            out.extend(page.subscriptions);
            match (page.next_link, page.continuation_token) {
                (Some(link), _) if !link.is_empty() => {
                    let next = self.api.same_origin(&link)?;
                    if next == url {
                        break;
                    }
                    url = next;
                }
                (_, Some(token)) if !token.is_empty() => {
                    let mut next = self.api.url(&["saas", "subscriptions"])?;
                    next.query_pairs_mut()
                        .append_pair("continuationToken", &token);
                    url = next;
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// The plans a subscription may move to (`listAvailablePlans`).
    pub async fn available_plans(
        &self,
        subscription: &ExternalRef,
    ) -> Result<Vec<AvailablePlan>, ProviderError> {
        let url = self.api.url(&[
            "saas",
            "subscriptions",
            &subscription.external_id,
            "listAvailablePlans",
        ])?;
        let what = "list available plans";
        let reply = self.api.send_ok(Method::GET, url, None, what).await?;
        if reply.body.iter().all(u8::is_ascii_whitespace) {
            // The docs: an empty body for an unknown subscription.
            return Ok(Vec::new());
        }
        Ok(reply.parse::<PlanList>(what)?.plans)
    }

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

    /// Refuses a Reinstate we cannot honour. Microsoft's webhook page: there is nothing to
    /// PATCH for a Reinstate; a publisher that cannot reinstate deletes the subscription. This
    /// therefore cancels the subscription (DELETE) and returns the cancellation's operation.
    pub async fn refuse_reinstate(
        &self,
        subscription: &ExternalRef,
    ) -> Result<ChangeOutcome, ProviderError> {
        self.cancel(subscription).await
    }

    /// PATCH on the subscription: 202 + `Operation-Location` → the operation id.
    async fn update(
        &self,
        subscription: &ExternalRef,
        body: Value,
        what: &str,
    ) -> Result<ChangeOutcome, ProviderError> {
        let url = self
            .api
            .url(&["saas", "subscriptions", &subscription.external_id])?;
        let reply = self
            .api
            .send(Method::PATCH, url, Some(&body), &[], None, what)
            .await?;
        self.operation_outcome(reply, what)
    }

    fn operation_outcome(
        &self,
        reply: crate::http::Reply,
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

    /// Maps a verified operation to events; `sub` is the subscription read alongside.
    fn events_for(
        &self,
        op: &SaasOperation,
        sub: &SaasSubscription,
        fallback_time: time::OffsetDateTime,
    ) -> Vec<MarketplaceEvent> {
        let status = op.status();
        let occurred_at = op.time_stamp().unwrap_or(fallback_time);
        let external = sub.external_ref();
        let source = op.operation_request_source.as_deref().unwrap_or("Azure");
        let event = |kind: EventKind| MarketplaceEvent {
            subscription: external.clone(),
            occurred_at,
            kind,
            free_trial: Some(sub.is_free_trial),
        };
        let lifecycle = |event: Lifecycle, why: &str| EventKind::Lifecycle {
            event,
            reason: Some(format!("{why} ({source}, operation {})", op.id)),
        };
        let in_progress = matches!(
            status,
            OperationStatus::InProgress | OperationStatus::NotStarted
        );
        let succeeded = status == OperationStatus::Succeeded;
        let plan = op.plan_id.clone().map(PlanId::new);
        match op.action() {
            OperationAction::ChangePlan if in_progress => vec![event(EventKind::ChangeRequested {
                operation_id: op.id.clone(),
                plan_id: plan,
                quantity: op.quantity,
            })],
            OperationAction::ChangeQuantity if in_progress => {
                vec![event(EventKind::ChangeRequested {
                    operation_id: op.id.clone(),
                    plan_id: None,
                    quantity: op.quantity,
                })]
            }
            OperationAction::ChangePlan if succeeded => {
                let mut out = Vec::new();
                if let Some(plan_id) = plan {
                    out.push(event(EventKind::PlanChanged { plan_id }));
                }
                if let Some(quantity) = op.quantity {
                    out.push(event(EventKind::QuantityChanged { quantity }));
                }
                out
            }
            OperationAction::ChangeQuantity if succeeded => op
                .quantity
                .map(|quantity| vec![event(EventKind::QuantityChanged { quantity })])
                .unwrap_or_default(),
            OperationAction::Suspend if succeeded => {
                vec![event(lifecycle(Lifecycle::Suspend, "suspended"))]
            }
            // Reinstate: nothing to PATCH (current docs); the marketplace completes it.
            OperationAction::Reinstate if succeeded || in_progress => {
                vec![event(lifecycle(Lifecycle::Reinstate, "reinstated"))]
            }
            OperationAction::Renew if succeeded => {
                vec![event(EventKind::Renewed { term: sub.term() })]
            }
            OperationAction::Unsubscribe if succeeded => {
                vec![event(lifecycle(Lifecycle::Cancel, "unsubscribed"))]
            }
            _ => Vec::new(),
        }
    }
}

/// The operation id in `.../operations/{id}?api-version=...`.
pub(crate) fn operation_id_from_location(location: &str) -> Option<String> {
    let path = location.split(['?', '#']).next()?;
    let mut segments = path.trim_end_matches('/').rsplit('/');
    let id = segments.next()?;
    (segments.next()? == "operations" && !id.is_empty()).then(|| id.to_owned())
}

/// Maps an unsuccessful Resolve.
fn resolve_error(reply: &crate::http::Reply) -> ProviderError {
    let (code, message) = reply.error_detail();
    let detail = match &code {
        Some(code) => format!("{code}: {message}"),
        None => message.clone(),
    };
    match reply.status {
        // Microsoft answers 400 for a missing, malformed, invalid or expired token alike (the
        // sandbox: "invalid or expired"). Only a message that speaks of expiry and not of
        // invalidity is taken as ExpiredToken; the buyer is told the same either way (reopen
        // the page from the Azure portal).
        StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND => {
            let lower = message.to_ascii_lowercase();
            if lower.contains("expired") && !lower.contains("invalid") {
                ProviderError::ExpiredToken(detail)
            } else {
                ProviderError::InvalidToken(detail)
            }
        }
        _ => crate::http::status_error("resolve", reply),
    }
}

/// A landing token as the buyer's browser brought it. The web layer has decoded the query once;
/// a token that still holds `%XX` escapes was encoded twice (some proxies and e-mail links do):
/// decode once more. `+` is left alone (base64, not a space).
pub fn normalize_landing_token(token: &str) -> String {
    let token = token.trim();
    if token.contains('%') {
        percent_encoding::percent_decode_str(token)
            .decode_utf8()
            .map(|t| t.into_owned())
            .unwrap_or_else(|_| token.to_owned())
    } else {
        token.to_owned()
    }
}

#[async_trait]
impl MarketplaceProvider for AzureProvider {
    fn marketplace(&self) -> Marketplace {
        Marketplace::AZURE
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            vendor_activates: true,
            vendor_changes_plan: true,
            vendor_cancels: true,
        }
    }

    async fn resolve(&self, token: &LandingToken) -> Result<ResolvedPurchase, ProviderError> {
        let raw = normalize_landing_token(&token.token);
        if raw.is_empty() {
            return Err(ProviderError::InvalidToken("the token is empty".into()));
        }
        let url = self.api.url(&["saas", "subscriptions", "resolve"])?;
        let what = "resolve";
        let reply = self
            .api
            .send(
                Method::POST,
                url,
                None,
                &[("x-ms-marketplace-token", raw.as_str())],
                None,
                what,
            )
            .await?;
        if !reply.status.is_success() {
            return Err(resolve_error(&reply));
        }
        let body: ResolveResponse = reply.parse(what)?;
        let mut sub = body.subscription.unwrap_or_default();
        // The top-level fields win for what they carry; the nested subscription has the rest.
        if let Some(id) = body.id {
            sub.id = id;
        }
        if let Some(offer) = body.offer_id {
            sub.offer_id = offer;
        }
        if body.plan_id.is_some() {
            sub.plan_id = body.plan_id;
        }
        if body.quantity.is_some() {
            sub.quantity = body.quantity;
        }
        if sub.id.is_empty() {
            return Err(ProviderError::retryable(
                "resolve: the response names no subscription id",
            ));
        }
        Ok(ResolvedPurchase {
            subscription: sub.external_ref(),
            plan_id: sub.plan_id.clone().map(PlanId::new),
            quantity: sub.quantity,
            free_trial: sub.is_free_trial,
            term: sub.term(),
            display_name: body.subscription_name.or_else(|| sub.name.clone()),
            buyer_email: sub.beneficiary.email_id.clone(),
        })
    }

    async fn activate(
        &self,
        subscription: &ExternalRef,
        plan: Option<&PlanId>,
        quantity: Option<u32>,
    ) -> Result<(), ProviderError> {
        let (plan_id, quantity) = match plan {
            Some(plan) => (plan.as_str().to_owned(), quantity),
            None => {
                let current = self.subscription(&subscription.external_id).await?;
                let plan = current.plan_id.ok_or_else(|| ProviderError::Rejected {
                    code: "no_plan".into(),
                    message: "the subscription has no plan to activate".into(),
                })?;
                (plan, quantity.or(current.quantity))
            }
        };
        let mut body = json!({ "planId": plan_id });
        if let (Some(q), Some(obj)) = (quantity, body.as_object_mut()) {
            obj.insert("quantity".into(), json!(q));
        }
        let url = self.api.url(&[
            "saas",
            "subscriptions",
            &subscription.external_id,
            "activate",
        ])?;
        let what = "activate";
        let reply = self
            .api
            .send(Method::POST, url, Some(&body), &[], None, what)
            .await?;
        if reply.status.is_success() {
            return Ok(());
        }
        if reply.status == StatusCode::BAD_REQUEST {
            // A second activate is a 400 ("already Subscribed"): the outbox may resend after a
            // crash, so check the status and treat an active subscription as done.
            let current = self.subscription(&subscription.external_id).await?;
            if matches!(
                current.status(),
                crate::model::SaasStatus::Subscribed | crate::model::SaasStatus::Suspended
            ) {
                return Ok(());
            }
        }
        Err(reply.into_error(what))
    }

    async fn change_plan(
        &self,
        subscription: &ExternalRef,
        plan: &PlanId,
    ) -> Result<ChangeOutcome, ProviderError> {
        self.update(
            subscription,
            json!({ "planId": plan.as_str() }),
            "change plan",
        )
        .await
    }

    async fn change_quantity(
        &self,
        subscription: &ExternalRef,
        quantity: u32,
    ) -> Result<ChangeOutcome, ProviderError> {
        self.update(
            subscription,
            json!({ "quantity": quantity }),
            "change quantity",
        )
        .await
    }

    async fn cancel(&self, subscription: &ExternalRef) -> Result<ChangeOutcome, ProviderError> {
        let url = self
            .api
            .url(&["saas", "subscriptions", &subscription.external_id])?;
        let what = "cancel";
        let reply = self
            .api
            .send(Method::DELETE, url, None, &[], None, what)
            .await?;
        self.operation_outcome(reply, what)
    }

    async fn report_usage(
        &self,
        records: &[UsageRecord],
    ) -> Result<Vec<UsageOutcome>, ProviderError> {
        metering::report(&self.api, records).await
    }

    async fn entitlements(
        &self,
        subscription: &ExternalRef,
    ) -> Result<Vec<Entitlement>, ProviderError> {
        let sub = self.subscription(&subscription.external_id).await?;
        let expires_at = sub.term().and_then(|t| t.end);
        let mut out = Vec::new();
        if let Some(plan) = &sub.plan_id {
            out.push(Entitlement {
                dimension: "plan".into(),
                value: EntitlementValue::String(plan.clone()),
                expires_at,
            });
        }
        if let Some(quantity) = sub.quantity {
            out.push(Entitlement {
                dimension: "quantity".into(),
                value: EntitlementValue::Integer(i64::from(quantity)),
                expires_at,
            });
        }
        Ok(out)
    }

    async fn authenticate(
        &self,
        message: &InboundMessage,
    ) -> Result<AuthenticatedMessage, ProviderError> {
        webhook::authenticate(self, message).await
    }

    /// PATCHes the operation with `Success` or `Failure`. Microsoft gives us 10 s from the
    /// webhook, so this uses the short `change_ack_timeout_secs`. A 409 means the operation is
    /// settled already (auto-accepted after 10 s, or answered before): when it ended the way we
    /// wanted this is success, otherwise `Rejected { code: "conflict" }`.
    async fn respond_to_change(
        &self,
        subscription: &ExternalRef,
        operation_id: &str,
        accept: bool,
    ) -> Result<(), ProviderError> {
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
            .send(
                Method::PATCH,
                url,
                Some(&body),
                &[],
                Some(Duration::from_secs(self.config.change_ack_timeout_secs)),
                what,
            )
            .await?;
        if reply.status.is_success() {
            return Ok(());
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
                return Ok(());
            }
            return Err(ProviderError::Rejected {
                code: "conflict".into(),
                message: format!(
                    "operation {operation_id} is already {} (we wanted to {})",
                    status.as_str(),
                    if accept { "accept" } else { "refuse" }
                ),
            });
        }
        Err(reply.into_error(what))
    }

    fn inbound_endpoints(&self) -> &'static [InboundEndpoint] {
        &ENDPOINTS
    }

    fn buyer_sign_in(&self) -> Option<Arc<dyn marketlink_core::BuyerSignIn>> {
        self.buyer_sign_in.clone()
    }

    async fn available_plans(
        &self,
        subscription: &ExternalRef,
    ) -> Result<Vec<marketlink_core::AvailablePlan>, ProviderError> {
        Ok(AzureProvider::available_plans(self, subscription)
            .await?
            .into_iter()
            .filter(|plan| !plan.is_stop_sell)
            .map(|plan| marketlink_core::AvailablePlan {
                plan_id: marketlink_core::PlanId::new(plan.plan_id),
                display_name: plan.display_name,
                per_seat: plan.is_price_per_seat,
            })
            .collect())
    }

    /// Confirms the webhook with Get Operation (never trusting the payload) and reads the
    /// subscription, then maps the operation as it is now. Failed/Conflict operations and
    /// unknown actions give no events. Safe to repeat.
    async fn interpret(
        &self,
        message: &AuthenticatedMessage,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        let notice = webhook::Notice::from_payload(&message.payload)?;
        let op = self
            .operation(&notice.subscription_id, &notice.operation_id)
            .await?;
        let same_subscription = op.subscription_id.is_empty()
            || op
                .subscription_id
                .eq_ignore_ascii_case(&notice.subscription_id);
        if !op.id.eq_ignore_ascii_case(&notice.operation_id)
            || !same_subscription
            || (!notice.action.is_empty() && op.action != notice.action)
        {
            return Err(ProviderError::Rejected {
                code: "operation_mismatch".into(),
                message: format!(
                    "the webhook says {} {} on {}, Get Operation says {} {} on {}",
                    notice.action,
                    notice.operation_id,
                    notice.subscription_id,
                    op.action,
                    op.id,
                    op.subscription_id
                ),
            });
        }
        let status = op.status();
        if matches!(status, OperationStatus::Failed | OperationStatus::Conflict) {
            tracing::info!(operation = %op.id, action = %op.action, status = %status.as_str(), "operation did not go through: nothing to apply");
            return Ok(Vec::new());
        }
        let sub = self.subscription(&notice.subscription_id).await?;
        Ok(self.events_for(&op, &sub, message.received_at))
    }

    async fn diagnose(&self) -> Vec<marketlink_core::Diagnosis> {
        self.run_diagnosis().await
    }

    async fn survey(
        &self,
        _known: &[ExternalRef],
    ) -> Result<Vec<marketlink_core::MarketplaceView>, ProviderError> {
        self.survey_subscriptions().await
    }
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

    #[test]
    fn landing_tokens_are_decoded_once() {
        assert_eq!(normalize_landing_token("ab%2Bcd%2Fef%3D"), "ab+cd/ef=");
        assert_eq!(normalize_landing_token("ab+cd/ef="), "ab+cd/ef=");
    }
}
