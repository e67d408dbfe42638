//! The webhook Microsoft POSTs to `/azure/webhook`: bearer-JWT authentication and a lenient view
//! of the payload.
//!
//! The token (an Entra v2 access token, or v1) must be signed by a key of the publisher
//! tenant's JWKS (RS256), have `aud` = our app id, `iss` in the accepted set, `tid` = our tenant,
//! `azp` (v2) or `appid` (v1) = the marketplace's first-party app, and a live `exp`/`nbf` by our
//! clock (with `jwt_leeway_secs`).
//!
//! The inbox de-duplication key is `{operation id}:{status}`, not the operation id alone:
//! Microsoft can notify the same operation twice with different statuses (a marketplace change
//! `InProgress`, later `Succeeded`; older docs also describe a `Success` re-send). Keying on the
//! id alone would drop the second notice; keying on id + status keeps exactly one copy of each
//! stage while still collapsing Microsoft's retries of the same notice (500 over 8 hours). Both
//! copies are safe to apply: `interpret` reads the operation's current status, and the engine's
//! plan/quantity updates are idempotent.

use marketlink_core::{AuthenticatedMessage, InboundMessage, Marketplace, ProviderError};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    jwt::{Expectations, JwtError, claim, verify},
    provider::AzureProvider,
};

/// The channel name of the webhook endpoint.
pub const CHANNEL: &str = "webhook";

/// The fields of a webhook body marketlink needs; everything else is kept in the stored
/// payload and ignored here.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct Notice {
    #[serde(rename = "id")]
    pub operation_id: String,
    pub subscription_id: String,
    pub action: String,
    pub status: String,
}

impl Notice {
    pub fn from_payload(payload: &Value) -> Result<Self, ProviderError> {
        let mut notice: Notice =
            serde_json::from_value(payload.clone()).map_err(|e| ProviderError::Rejected {
                code: "malformed".into(),
                message: format!("the webhook body is not the expected JSON object: {e}"),
            })?;
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
}

fn unauthenticated(reason: impl Into<String>) -> ProviderError {
    ProviderError::Unauthenticated(reason.into())
}

/// The bearer token of the `authorization` header.
fn bearer(message: &InboundMessage) -> Result<&str, ProviderError> {
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

/// Verifies the webhook token, then parses the body.
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
    let config = &provider.config;
    let token = bearer(message)?;
    let audience = config.expected_webhook_audience();
    let claims = verify(
        token,
        &provider.jwks,
        provider.clock.as_ref(),
        &Expectations {
            audiences: &[audience],
            leeway: std::time::Duration::from_secs(config.jwt_leeway_secs),
        },
    )
    .await
    .map_err(|e| match e {
        JwtError::Invalid(reason) => unauthenticated(reason),
        JwtError::Unavailable(reason) => {
            ProviderError::retryable(format!("cannot check the webhook token now: {reason}"))
        }
    })?;
    let issuer = claim(&claims, "iss").unwrap_or_default();
    if !config
        .accepted_webhook_issuers()
        .iter()
        .any(|i| i == issuer)
    {
        return Err(unauthenticated(format!(
            "the token issuer `{issuer}` is not accepted"
        )));
    }
    let tenant = claim(&claims, "tid")
        .or_else(|| {
            claim(
                &claims,
                "http://schemas.microsoft.com/identity/claims/tenantid",
            )
        })
        .unwrap_or_default();
    if !tenant.eq_ignore_ascii_case(&config.tenant_id) {
        return Err(unauthenticated(format!(
            "the token tenant `{tenant}` is not the publisher tenant"
        )));
    }
    let app = claim(&claims, "azp")
        .or_else(|| claim(&claims, "appid"))
        .unwrap_or_default();
    if !app.eq_ignore_ascii_case(&config.marketplace_app_id) {
        return Err(unauthenticated(format!(
            "the token was issued to app `{app}`, not the marketplace"
        )));
    }

    let payload: Value =
        serde_json::from_slice(&message.body).map_err(|e| ProviderError::Rejected {
            code: "malformed".into(),
            message: format!("the webhook body is not JSON: {e}"),
        })?;
    let notice = Notice::from_payload(&payload)?;
    let status = if notice.status.is_empty() {
        "unknown"
    } else {
        notice.status.as_str()
    };
    Ok(AuthenticatedMessage {
        marketplace: Marketplace::AZURE,
        dedup_key: format!("{}:{status}", notice.operation_id.to_ascii_lowercase()),
        kind: if notice.action.is_empty() {
            "operation".into()
        } else {
            notice.action.clone()
        },
        received_at: provider.clock.now(),
        payload,
    })
}
