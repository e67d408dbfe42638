//! Bearer tokens on incoming calls: reading them, checking them against the sandbox's signing
//! key and clock, and authorising marketplace API callers as the configured publisher.

use axum::http::{HeaderMap, header};
use serde_json::Value;

use super::{Shared, errors::ApiError};

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// Checks signature, lifetime (by the sandbox clock) and audience; returns the claims.
pub fn check_token(shared: &Shared, token: &str, audiences: &[&str]) -> Result<Value, String> {
    let claims = shared
        .key
        .verify(token)
        .ok_or("the token signature is invalid or the token is malformed")?;
    let now = shared.now().unix_timestamp();
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or("no exp claim")?;
    if exp <= now {
        return Err("the token is expired".into());
    }
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_i64)
        && nbf > now + 300
    {
        return Err("the token is not yet valid".into());
    }
    let aud = claims
        .get("aud")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !audiences.contains(&aud) {
        return Err(format!("the token audience '{aud}' is not accepted here"));
    }
    Ok(claims)
}

/// Who called a marketplace API.
pub struct Publisher;

/// Authorises a marketplace API call: a live token for the marketplace resource, of this
/// publisher's app. Microsoft answers 403 alike for a missing, invalid or expired token and for
/// another app's token (OpenAPI 403: "The authentication token was not provided or is invalid, or
/// the request is attempting to access an acquisition that does not belong to the current
/// publisher"), so every refusal is `denied()`; the reason goes to the sandbox's log only.
pub fn authorize_publisher(
    shared: &Shared,
    headers: &HeaderMap,
    denied: fn() -> ApiError,
) -> Result<Publisher, ApiError> {
    let refuse = |reason: &str| {
        tracing::info!(reason, "azure sandbox: marketplace API call refused (403)");
        denied()
    };
    let Some(token) = bearer(headers) else {
        return Err(refuse("no bearer token"));
    };
    let resource = shared.config.marketplace_resource_id.as_str();
    let claims = check_token(shared, token, &[resource]).map_err(|e| refuse(&e))?;
    let app = claims
        .get("appid")
        .or_else(|| claims.get("azp"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let tid = claims
        .get("tid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if app != shared.config.publisher_app_id || tid != shared.config.publisher_tenant_id {
        return Err(refuse("the token is another app's"));
    }
    Ok(Publisher)
}
