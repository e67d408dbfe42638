//! Entry points for the fuzz targets (`fuzz/`, docs/security.md "Fuzzing"): the webhook's
//! parsers of outside input, reached without network or clock. Not an API: hidden from the
//! docs and free to change with the targets.

use std::time::Duration;

use marketlink_core::{InboundMessage, ProviderError};
use serde_json::Value;

use crate::{
    AzureConfig,
    jwt::{Expectations, JwtError, check_lifetime_and_audience, read_claims, signing_key_id},
    webhook::{CHANNEL, bearer, check_claims, read_body},
};

/// What the webhook reads from a body.
#[derive(Debug, Clone)]
pub struct WebhookNotice {
    pub payload: Value,
    pub operation_id: String,
    pub subscription_id: String,
    pub action: String,
    pub status: String,
    pub dedup_key: String,
    pub kind: String,
}

/// The webhook body as `authenticate` reads it once the token is accepted.
pub fn webhook_body(body: &[u8]) -> Result<WebhookNotice, ProviderError> {
    let (payload, notice) = read_body(body)?;
    Ok(WebhookNotice {
        dedup_key: notice.dedup_key(),
        kind: notice.kind(),
        payload,
        operation_id: notice.operation_id,
        subscription_id: notice.subscription_id,
        action: notice.action,
        status: notice.status,
    })
}

/// The bearer token of an `Authorization` header value.
pub fn bearer_token(authorization: &str) -> Result<String, ProviderError> {
    let message = InboundMessage {
        channel: CHANNEL.into(),
        headers: vec![("authorization".into(), authorization.into())],
        body: Vec::new(),
    };
    bearer(&message).map(str::to_owned)
}

fn reason(error: JwtError) -> String {
    error.to_string()
}

/// The token's signing key id, as read before the key is looked up.
pub fn jwt_key_id(token: &str) -> Result<String, String> {
    signing_key_id(token).map_err(reason)
}

/// The checks of verified claims: the payload's JSON read as the webhook reads it, then
/// lifetime and audience against `now` (Unix seconds) with the configured leeway, then issuer,
/// tenant and app against `config`.
pub fn jwt_claims(config: &AzureConfig, claims: &[u8], now: i64) -> Result<(), String> {
    let expect = Expectations {
        audiences: &[config.expected_webhook_audience()],
        leeway: Duration::from_secs(config.jwt_leeway_secs),
    };
    let claims = read_claims(claims).map_err(reason)?;
    check_lifetime_and_audience(&claims, now, &expect).map_err(reason)?;
    check_claims(config, &config.accepted_webhook_issuers(), &claims).map_err(|e| e.to_string())
}

/// The landing token among a landing request's fields.
pub fn landing_token(fields: &[(String, String)]) -> Option<String> {
    crate::provider::landing_token(fields).map(|t| t.token)
}
