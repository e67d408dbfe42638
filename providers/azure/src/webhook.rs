//! The webhook Microsoft POSTs to `/azure/webhook`: bearer-JWT authentication, a lenient view
//! of the payload, and its interpretation, confirmed by Get Operation, into domain events.
//!
//! The token (an Entra v2 access token, or v1) must be signed by a key of the publisher
//! tenant's JWKS (RS256), have `aud` = our app id, `iss` in the accepted set, `tid` = our tenant,
//! `azp` (v2) or `appid` (v1) = the marketplace's first-party app, and a live `exp`/`nbf` by our
//! clock (with `jwt_leeway_secs`).
//!
//! Answers decide whether Microsoft comes back: only a token that fails these checks is
//! refused (401); when we cannot check it now (the JWKS is unreachable, or an unknown `kid`
//! arrives while a new download is rate limited) the answer is retryable (503), as is a store
//! that cannot take the message. A 4xx to ChangePlan/ChangeQuantity refuses the change (a Reinstate
//! is notify-only: a 4xx there is only a failed delivery).
//!
//! `webhook_auth = "none"` (Microsoft's SaaS API emulator, loopback API base only) skips the
//! token and logs a warning for every webhook so taken; Get Operation still confirms each one.
//!
//! The inbox de-duplication key is `{operation id}:{status}`, not the operation id alone:
//! Microsoft can notify the same operation twice with different statuses (a marketplace change
//! `InProgress`, later `Succeeded`; older docs also describe a `Success` re-send). Keying on the
//! id alone would drop the second notice; keying on id + status keeps exactly one copy of each
//! stage while still collapsing Microsoft's retries of the same notice (500 over 8 hours). Both
//! copies are safe to apply: `interpret` reads the operation's current status, and the engine's
//! plan/quantity updates are idempotent.

use marketlink_core::{
    AuthenticatedMessage, EventKind, InboundMessage, Lifecycle, Marketplace, MarketplaceEvent,
    PlanId, ProviderError,
};
use serde_json::{Map, Value};

use crate::{
    AzureProvider,
    config::{AzureConfig, WebhookAuth},
    jwt::{Claims, Expectations, JwtError, verify},
    model::{OperationAction, OperationStatus, SaasOperation, SaasSubscription},
};

/// The channel name of the webhook endpoint.
pub const CHANNEL: &str = "webhook";

/// The fields of a webhook body marketlink needs; everything else is kept in the stored
/// payload and ignored here.
#[derive(Debug, Clone, Default)]
pub(crate) struct Notice {
    pub operation_id: String,
    pub subscription_id: String,
    pub action: String,
    pub status: String,
}

/// A string field of `object`; absent, `null` or not a string reads as empty (Microsoft's
/// payloads carry explicit `null`s, and older examples omit most fields).
fn text(object: &Map<String, Value>, key: &str) -> String {
    object
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

impl Notice {
    pub fn from_payload(payload: &Value) -> Result<Self, ProviderError> {
        let object = payload.as_object().ok_or_else(|| ProviderError::Rejected {
            code: "malformed".into(),
            message: "the webhook body is not a JSON object".into(),
        })?;
        let mut notice = Notice {
            operation_id: text(object, "id"),
            subscription_id: text(object, "subscriptionId"),
            action: text(object, "action"),
            status: text(object, "status"),
        };
        // Older payloads may put the subscription id only in the nested subscription.
        if notice.subscription_id.is_empty()
            && let Some(id) = payload
                .get("subscription")
                .and_then(|s| s.get("id"))
                .and_then(Value::as_str)
        {
            notice.subscription_id = id.to_owned();
        }
        if notice.operation_id.is_empty() || notice.subscription_id.is_empty() {
            return Err(ProviderError::Rejected {
                code: "malformed".into(),
                message: "the webhook body has no operation id or subscription id".into(),
            });
        }
        notice.subscription_id = notice.subscription_id.to_ascii_lowercase();
        Ok(notice)
    }

    /// The inbox key: `{operation id}:{status}` (see the module documentation).
    pub fn dedup_key(&self) -> String {
        let status = if self.status.is_empty() {
            "unknown"
        } else {
            self.status.as_str()
        };
        format!("{}:{status}", self.operation_id.to_ascii_lowercase())
    }

    /// A short name of the notice for people: its action.
    pub fn kind(&self) -> String {
        if self.action.is_empty() {
            "operation".into()
        } else {
            self.action.clone()
        }
    }
}

fn unauthenticated(reason: impl Into<String>) -> ProviderError {
    ProviderError::Unauthenticated(reason.into())
}

/// The bearer token of the `authorization` header.
pub(crate) fn bearer(message: &InboundMessage) -> Result<&str, ProviderError> {
    let value = message
        .header("authorization")
        .ok_or_else(|| unauthenticated("no Authorization header"))?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or_else(|| unauthenticated("the Authorization header is not `Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(unauthenticated(
            "the Authorization header is not `Bearer <token>`",
        ));
    }
    Ok(token.trim())
}

/// The token was issued by one of `issuers` (the accepted issuers of our tenant) to the
/// marketplace's app.
pub(crate) fn check_claims(
    config: &AzureConfig,
    issuers: &[String],
    claims: &Claims<'_>,
) -> Result<(), ProviderError> {
    let issuer = claims.iss.get().unwrap_or_default();
    if !issuers.iter().any(|i| i == issuer) {
        return Err(unauthenticated(format!(
            "the token issuer `{issuer}` is not accepted"
        )));
    }
    let tenant = claims
        .tid
        .get()
        .or_else(|| claims.tenant_id_uri.get())
        .unwrap_or_default();
    if !tenant.eq_ignore_ascii_case(&config.tenant_id) {
        return Err(unauthenticated(format!(
            "the token tenant `{tenant}` is not the publisher tenant"
        )));
    }
    let app = claims
        .azp
        .get()
        .or_else(|| claims.appid.get())
        .unwrap_or_default();
    if !app.eq_ignore_ascii_case(&config.marketplace_app_id) {
        return Err(unauthenticated(format!(
            "the token was issued to app `{app}`, not the marketplace"
        )));
    }
    Ok(())
}

/// The bearer token is Microsoft's (signature, lifetime, audience, issuer, tenant, app).
async fn check_token(
    provider: &AzureProvider,
    message: &InboundMessage,
) -> Result<(), ProviderError> {
    let config = &provider.config;
    let token = bearer(message)?;
    let audience = config.expected_webhook_audience();
    let mut payload = Vec::new();
    let claims = verify(
        token,
        &provider.jwks,
        provider.clock.as_ref(),
        &Expectations {
            audiences: &[audience],
            leeway: std::time::Duration::from_secs(config.jwt_leeway_secs),
        },
        &mut payload,
    )
    .await
    .map_err(|e| match e {
        JwtError::Invalid(reason) => unauthenticated(reason),
        JwtError::Unavailable(reason) => {
            ProviderError::retryable(format!("cannot check the webhook token now: {reason}"))
        }
    })?;
    check_claims(config, &provider.webhook_issuers, &claims)
}

/// Verifies the webhook token (unless `webhook_auth = "none"`), then parses the body.
pub(crate) async fn authenticate(
    provider: &AzureProvider,
    message: &InboundMessage,
) -> Result<AuthenticatedMessage, ProviderError> {
    if message.channel != CHANNEL {
        return Err(unauthenticated(format!(
            "unknown channel `{}` for azure",
            message.channel
        )));
    }
    match provider.config.webhook_auth {
        WebhookAuth::Entra => check_token(provider, message).await?,
        WebhookAuth::None => tracing::warn!(
            api_base = %provider.config.api_base(),
            "accepting an unsigned webhook: [azure] webhook_auth = \"none\" (Microsoft's SaaS API emulator only)"
        ),
    }
    let (payload, notice) = read_body(&message.body)?;
    Ok(AuthenticatedMessage {
        marketplace: Marketplace::AZURE,
        dedup_key: notice.dedup_key(),
        kind: notice.kind(),
        received_at: provider.clock.now(),
        payload,
    })
}

/// The webhook body: JSON, with the notice it carries.
pub(crate) fn read_body(body: &[u8]) -> Result<(Value, Notice), ProviderError> {
    let payload: Value = serde_json::from_slice(body).map_err(|e| ProviderError::Rejected {
        code: "malformed".into(),
        message: format!("the webhook body is not JSON: {e}"),
    })?;
    let notice = Notice::from_payload(&payload)?;
    Ok((payload, notice))
}

/// Confirms the webhook with Get Operation (never trusting the payload) and reads the
/// subscription, then maps the operation as it is now. Failed/Conflict operations and
/// unknown actions give no events. Safe to repeat.
pub(crate) async fn interpret(
    provider: &AzureProvider,
    message: &AuthenticatedMessage,
) -> Result<Vec<MarketplaceEvent>, ProviderError> {
    let notice = Notice::from_payload(&message.payload)?;
    let op = provider
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
    let sub = provider.subscription(&notice.subscription_id).await?;
    // Get Operation's schema has no `operationRequestSource`; the (authenticated) webhook body
    // does. Older payloads without it came from marketplace-side changes.
    let source = op
        .operation_request_source
        .clone()
        .or_else(|| text_of(&message.payload, "operationRequestSource"))
        .unwrap_or_else(|| "Azure".into());
    let arrived = Arrival {
        received_at: message.received_at,
        answer_by: message.received_at
            + time::Duration::seconds(
                i64::try_from(provider.config.change_ack_timeout_secs).unwrap_or(i64::MAX),
            ),
        source: &source,
    };
    Ok(events_for(&op, &sub, &arrived))
}

fn text_of(payload: &Value, key: &str) -> Option<String> {
    payload
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// When and how a webhook reached us.
struct Arrival<'a> {
    received_at: time::OffsetDateTime,
    /// `received_at` + `change_ack_timeout_secs`: Microsoft's 10 s window, less a margin.
    answer_by: time::OffsetDateTime,
    /// `operationRequestSource`: `Azure` (the buyer or Microsoft) or `Partner` (us).
    source: &'a str,
}

/// Maps a verified operation to events; `sub` is the subscription read alongside.
///
/// An in-progress change only becomes a request to answer when Microsoft started it
/// (`Azure`): one we started (`Partner`) is ours already, followed by its `Operation-Location`
/// (engine `follow_change`), and is applied once it Succeeded. Microsoft: act on a webhook
/// only once its operation reached a terminal status (MicrosoftDocs/azure-docs#30873).
fn events_for(
    op: &SaasOperation,
    sub: &SaasSubscription,
    arrived: &Arrival<'_>,
) -> Vec<MarketplaceEvent> {
    let status = op.status();
    let occurred_at = op.time_stamp().unwrap_or(arrived.received_at);
    let external = sub.external_ref();
    let source = arrived.source;
    let event = |kind: EventKind| MarketplaceEvent {
        subscription: external.clone(),
        occurred_at,
        kind,
        free_trial: Some(sub.is_free_trial),
        aliases: Vec::new(),
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
    let ours = source.eq_ignore_ascii_case("Partner");
    let request = |plan_id: Option<PlanId>| EventKind::ChangeRequested {
        operation_id: op.id.clone(),
        plan_id,
        quantity: op.quantity,
        answer_by: Some(arrived.answer_by),
    };
    match op.action() {
        OperationAction::ChangePlan | OperationAction::ChangeQuantity if in_progress && ours => {
            tracing::info!(operation = %op.id, action = %op.action, "our own change in progress: followed, not answered");
            Vec::new()
        }
        OperationAction::ChangePlan if in_progress => vec![event(request(plan))],
        OperationAction::ChangeQuantity if in_progress => vec![event(request(None))],
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
