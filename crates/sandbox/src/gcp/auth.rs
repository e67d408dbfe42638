//! Google OAuth 2.0 for service accounts: the JWT-bearer grant at `/token` (RFC 7523, as
//! `https://oauth2.googleapis.com/token`, developers.google.com/identity/protocols/oauth2/service-account
//! "Preparing to make an authorized API call"), the access tokens the other APIs check, and
//! the push OIDC issuer's discovery document and JWKS (`oauth2/v3/certs` as Google's).

use std::sync::Arc;

use axum::{
    Form, Json,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use super::{Shared, errors::GoogleError};

/// The scope every partner API accepts (gcp.md §3).
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Google's token endpoint, accepted as an assertion audience besides the sandbox's own.
const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// An issued access token (kept by the SHA-256 of the token, so a lookup reveals nothing by
/// its timing).
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub email: String,
    pub scopes: Vec<String>,
    pub expires_at: OffsetDateTime,
}

pub(crate) fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The vendor's service account key file, as Google's IAM console downloads it.
#[derive(Clone, Serialize, Deserialize)]
pub struct ServiceAccountKey {
    #[serde(rename = "type")]
    pub key_type: String,
    pub project_id: String,
    pub private_key_id: String,
    pub private_key: String,
    pub client_email: String,
    pub client_id: String,
    pub auth_uri: String,
    pub token_uri: String,
    pub universe_domain: String,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct TokenForm {
    grant_type: Option<String>,
    assertion: Option<String>,
}

/// `{"error", "error_description"}`, the OAuth error shape Google's token endpoint answers.
fn oauth_error(error: &str, description: &str) -> Response {
    let body = json!({"error": error, "error_description": description});
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// `POST /token`.
pub(crate) async fn token(
    State(shared): State<Arc<Shared>>,
    Form(form): Form<TokenForm>,
) -> Response {
    if form.grant_type.as_deref() != Some(JWT_BEARER) {
        let given = form.grant_type.unwrap_or_default();
        return oauth_error(
            "unsupported_grant_type",
            &format!("Invalid grant_type: {given}"),
        );
    }
    let Some(assertion) = form.assertion else {
        return oauth_error("invalid_request", "Missing required parameter: assertion");
    };
    match check_assertion(&shared, &assertion) {
        Ok(grant) => issue(&shared, grant),
        Err((error, description)) => oauth_error(error, description),
    }
}

fn check_assertion(
    shared: &Shared,
    assertion: &str,
) -> Result<Grant, (&'static str, &'static str)> {
    let claims = shared
        .account_key
        .verify(assertion)
        .ok_or(("invalid_grant", "Invalid JWT Signature."))?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or_default();
    if text("iss") != shared.config.service_account_email {
        return Err(("invalid_grant", "Invalid grant: account not found"));
    }
    let aud = text("aud");
    if aud != shared.config.token_uri() && aud != GOOGLE_TOKEN_URI {
        return Err(("invalid_grant", "Invalid JWT: Failed audience check."));
    }
    let now = shared.clock.now().unix_timestamp();
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .unwrap_or(i64::MIN);
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .unwrap_or(i64::MIN);
    // Google's rule: exp at most an hour after iat, and now within [iat, exp] (with skew).
    if exp <= now || iat > now + 300 || exp - iat > 3600 || exp < iat {
        return Err((
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable \
             timeframe. Check your iat and exp values in the JWT claim.",
        ));
    }
    let scopes: Vec<String> = text("scope")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if scopes.is_empty() {
        return Err((
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.",
        ));
    }
    Ok(Grant {
        email: text("iss").to_owned(),
        scopes,
        expires_at: shared.clock.now()
            + Duration::seconds(shared.config.access_token_lifetime_secs),
    })
}

fn issue(shared: &Shared, grant: Grant) -> Response {
    let token = format!("ya29.sandbox-{}", uuid::Uuid::new_v4().simple());
    let now = shared.clock.now();
    let mut state = shared.lock();
    // Expired grants go, so a long-running sandbox does not grow without bound.
    state.tokens.retain(|_, g| g.expires_at > now);
    state.tokens.insert(token_hash(&token), grant);
    drop(state);
    Json(json!({
        "access_token": token,
        "expires_in": shared.config.access_token_lifetime_secs,
        "token_type": "Bearer",
    }))
    .into_response()
}

/// The calling service account, if the request carries a live access token with one of
/// `scopes` (Google: 401 without a valid token, 403 "insufficient authentication scopes").
pub(crate) fn authorize(
    shared: &Shared,
    headers: &HeaderMap,
    scopes: &[&str],
) -> Result<String, GoogleError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(GoogleError::unauthenticated)?;
    let grant = shared
        .lock()
        .tokens
        .get(&token_hash(token.trim()))
        .cloned()
        .ok_or_else(GoogleError::unauthenticated)?;
    if grant.expires_at <= shared.clock.now() {
        return Err(GoogleError::unauthenticated());
    }
    if !grant
        .scopes
        .iter()
        .any(|s| s == CLOUD_PLATFORM || scopes.contains(&s.as_str()))
    {
        return Err(GoogleError {
            http: StatusCode::FORBIDDEN,
            status: "PERMISSION_DENIED",
            message: "Request had insufficient authentication scopes.".into(),
        });
    }
    Ok(grant.email)
}

/// `GET /.well-known/openid-configuration` of the push token issuer (the sandbox itself).
pub(crate) async fn discovery(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let base = shared.config.base();
    Json(json!({
        "issuer": base,
        "jwks_uri": format!("{base}/oauth2/v3/certs"),
        "token_endpoint": format!("{base}/token"),
        "id_token_signing_alg_values_supported": ["RS256"],
        "subject_types_supported": ["public"],
        "response_types_supported": ["id_token"],
        "claims_supported": ["aud", "email", "email_verified", "exp", "iat", "iss", "sub"],
    }))
}

/// `GET /oauth2/v3/certs`: the push OIDC key as a JWKS.
pub(crate) async fn jwks(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({"keys": [shared.keys.oidc.jwk()]}))
}

/// A push OIDC token as Pub/Sub sends it (S17): `aud`, `email`, `email_verified`, `sub`, an
/// hour of life, signed by the issuer's key.
pub(crate) fn push_token(shared: &Shared, audience: &str) -> anyhow::Result<String> {
    let now = shared.clock.now().unix_timestamp();
    let email = &shared.config.push_service_account_email;
    let sub = hex::encode(&Sha256::digest(email.as_bytes())[..10]);
    shared.keys.oidc.sign(&json!({
        "iss": shared.config.base(),
        "aud": audience,
        "azp": sub,
        "sub": sub,
        "email": email,
        "email_verified": true,
        "iat": now,
        "exp": now + 3600,
    }))
}
