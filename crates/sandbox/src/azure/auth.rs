//! Bearer tokens on incoming calls: reading them, checking them against the sandbox's signing
//! key and clock, and authorising marketplace API callers as the configured publisher.

use axum::http::{HeaderMap, StatusCode, header};
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

/// Authorises a marketplace API call: 401 without a valid token for the marketplace resource,
/// 403 for a valid token of an app that is not this publisher's.
pub fn authorize_publisher(
    shared: &Shared,
    headers: &HeaderMap,
    error: fn(StatusCode, &str, String) -> ApiError,
) -> Result<Publisher, ApiError> {
    let Some(token) = bearer(headers) else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "The Authorization header with a bearer token is required.".into(),
        ));
    };
    let resource = shared.config.marketplace_resource_id.as_str();
    let claims = check_token(shared, token, &[resource])
        .map_err(|e| error(StatusCode::UNAUTHORIZED, "Unauthorized", e))?;
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
        return Err(error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "The caller is not authorized for this publisher's resources.".into(),
        ));
    }
    Ok(Publisher)
}
