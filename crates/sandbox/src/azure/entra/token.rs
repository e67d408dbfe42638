//! The token endpoint (v2 `/{tenant}/oauth2/v2.0/token`, v1 `/{tenant}/oauth2/token`): client
//! credentials and authorization code (+ PKCE S256) grants, with Entra's error answers.

use std::collections::HashMap;

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::json;

use super::{
    assertion,
    claims::{marketplace_token, user_tokens},
    find_app, form, tenant_known, tenant_not_found,
};
use crate::azure::{
    Shared, config::ClientApp, http::AppState, keys::constant_time_eq, state::AuthCode,
};

/// A standard Entra token error.
fn token_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    let trace = uuid::Uuid::new_v4();
    (
        status,
        axum::Json(json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description} Trace ID: {trace}"),
            "error_codes": [code],
            "timestamp": time::OffsetDateTime::UNIX_EPOCH.date().to_string(),
            "trace_id": trace,
            "correlation_id": uuid::Uuid::new_v4(),
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        })),
    )
        .into_response()
}

/// Client id and secret from the form (`client_secret_post`) or Basic auth.
fn client_credentials(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> (Option<String>, Option<String>) {
    if let Some((id, secret)) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            let (id, secret) = s.split_once(':')?;
            let decode = |x: &str| {
                url::form_urlencoded::parse(format!("x={x}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
            };
            Some((decode(id)?, decode(secret)?))
        })
    {
        return (Some(id), Some(secret));
    }
    (
        form.get("client_id").cloned(),
        form.get("client_secret").cloned(),
    )
}

fn check_secret(app: &ClientApp, secret: &str) -> bool {
    constant_time_eq(app.client_secret.expose().as_bytes(), secret.as_bytes())
}

pub(super) async fn token_v2(
    State(shared): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    token(&shared, &tenant, &headers, &body, false)
}

pub(super) async fn token_v1(
    State(shared): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    token(&shared, &tenant, &headers, &body, true)
}

fn token(shared: &Shared, tenant: &str, headers: &HeaderMap, body: &[u8], v1: bool) -> Response {
    if !tenant_known(shared, tenant) {
        return tenant_not_found(tenant);
    }
    let form = form(body);
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => client_credentials_grant(shared, tenant, headers, &form, v1),
        Some("authorization_code") if !v1 => authorization_code_grant(shared, headers, &form),
        Some(other) => token_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{other}'."),
        ),
        None => token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        ),
    }
}

/// A refused token request: the error answer to send.
type Refusal = Box<Response>;

fn client_credentials_grant(
    shared: &Shared,
    tenant: &str,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    v1: bool,
) -> Response {
    let app = match authenticate_app(shared, tenant, headers, form) {
        Ok(app) => app,
        Err(refusal) => return *refusal,
    };
    let resource = shared.config.marketplace_resource_id.as_str();
    if let Err(refusal) = check_requested_resource(form, resource, tenant, v1) {
        return *refusal;
    }
    let (access_token, now, exp) = match marketplace_token(shared, &app) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "azure sandbox: signing failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let expires_in = exp - now;
    if v1 {
        axum::Json(json!({
            "token_type": "Bearer",
            "expires_in": expires_in.to_string(),
            "ext_expires_in": expires_in.to_string(),
            "expires_on": exp.to_string(),
            "not_before": now.to_string(),
            "resource": resource,
            "access_token": access_token,
        }))
        .into_response()
    } else {
        axum::Json(json!({
            "token_type": "Bearer",
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": access_token,
        }))
        .into_response()
    }
}

/// The client-credentials caller: an app of `tenant` with its secret.
fn authenticate_app(
    shared: &Shared,
    tenant: &str,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<ClientApp, Refusal> {
    let (client_id, secret) = client_credentials(headers, form);
    let Some(client_id) = client_id else {
        return Err(Box::new(token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        )));
    };
    let app = find_app(shared, &client_id).filter(|app| app.tenant_id == tenant);
    let Some(app) = app else {
        return Err(Box::new(token_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'."
            ),
        )));
    };
    if form.contains_key("client_assertion") {
        return match assertion::check(shared, &app, tenant, form) {
            Ok(()) => Ok(app),
            Err(refused) => Err(Box::new(token_error(
                refused.status,
                refused.error,
                refused.code,
                &refused.description,
            ))),
        };
    }
    let Some(secret) = secret else {
        return Err(Box::new(token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )));
    };
    if !check_secret(&app, &secret) {
        return Err(Box::new(token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret provided.",
        )));
    }
    Ok(app)
}

/// The token must be for the marketplace: `scope={resource}/.default` (v2) or `resource=` (v1).
fn check_requested_resource(
    form: &HashMap<String, String>,
    resource: &str,
    tenant: &str,
    v1: bool,
) -> Result<(), Refusal> {
    let wanted = if v1 {
        form.get("resource")
            .map(|r| r.trim_end_matches('/').to_string())
    } else {
        form.get("scope")
            .and_then(|s| s.strip_suffix("/.default"))
            .map(str::to_owned)
    };
    let refusal = match wanted {
        Some(r) if r == resource => return Ok(()),
        Some(r) => token_error(
            StatusCode::BAD_REQUEST,
            if v1 {
                "invalid_resource"
            } else {
                "invalid_scope"
            },
            500011,
            &format!(
                "The resource principal named {r} was not found in the tenant named {tenant}."
            ),
        ),
        None if v1 => token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'resource'.",
        ),
        None => token_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
        ),
    };
    Err(Box::new(refusal))
}

/// The S256 challenge of a verifier, by the `oauth2` crate the vendor side uses too (one PKCE
/// implementation); `None` for a length RFC 7636 forbids (43 to 128), which matches nothing.
fn pkce_s256(verifier: &str) -> Option<String> {
    (43..=128).contains(&verifier.len()).then(|| {
        let verifier = oauth2::PkceCodeVerifier::new(verifier.to_owned());
        oauth2::PkceCodeChallenge::from_code_verifier_sha256(&verifier)
            .as_str()
            .to_owned()
    })
}

fn invalid_grant(code: u32, message: &str) -> Refusal {
    Box::new(token_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        code,
        message,
    ))
}

fn authorization_code_grant(
    shared: &Shared,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Response {
    let checked = redeem_code(shared, form).and_then(|grant| {
        let app = authenticate_code_client(shared, headers, form, &grant)?;
        check_code_verifier(form, &grant)?;
        let user = shared
            .config
            .user(&grant.user_object_id)
            .cloned()
            .ok_or_else(|| invalid_grant(50034, "The user account does not exist."))?;
        Ok((grant, app, user))
    });
    let (grant, app, user) = match checked {
        Ok(checked) => checked,
        Err(refusal) => return *refusal,
    };
    match user_tokens(shared, &app, &user, &grant) {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "azure sandbox: signing failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Takes the authorization code out of the state (single use) and checks it is still live.
fn redeem_code(shared: &Shared, form: &HashMap<String, String>) -> Result<AuthCode, Refusal> {
    let Some(code) = form.get("code") else {
        return Err(Box::new(token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'code'.",
        )));
    };
    let now = shared.now();
    // Single use: the code is gone whatever happens next.
    let Some(grant) = shared.lock().auth_codes.remove(code) else {
        return Err(invalid_grant(
            54005,
            "OAuth2 Authorization code was already redeemed or is invalid.",
        ));
    };
    if grant.expires_at <= now {
        return Err(invalid_grant(
            70008,
            "The provided authorization code or refresh token has expired.",
        ));
    }
    Ok(grant)
}

/// The code's client, on the code's redirect URI, with its secret unless PKCE stands in for it.
fn authenticate_code_client(
    shared: &Shared,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    grant: &AuthCode,
) -> Result<ClientApp, Refusal> {
    let (client_id, secret) = client_credentials(headers, form);
    if client_id.as_deref() != Some(grant.client_id.as_str()) {
        return Err(invalid_grant(
            70000,
            "The code was issued to another client.",
        ));
    }
    if form.get("redirect_uri") != Some(&grant.redirect_uri) {
        return Err(invalid_grant(
            50148,
            "The redirect_uri does not match the one used in the authorization request.",
        ));
    }
    let Some(app) = find_app(shared, &grant.client_id) else {
        return Err(Box::new(token_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            "Application not found.",
        )));
    };
    match secret {
        Some(secret) if !check_secret(&app, &secret) => Err(Box::new(token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret provided.",
        ))),
        None if grant.code_challenge.is_none() => Err(Box::new(token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        ))),
        Some(_) | None => Ok(app),
    }
}

/// PKCE: a code issued with a `code_challenge` needs the matching `code_verifier`.
fn check_code_verifier(form: &HashMap<String, String>, grant: &AuthCode) -> Result<(), Refusal> {
    let Some(challenge) = &grant.code_challenge else {
        return Ok(());
    };
    match form.get("code_verifier") {
        Some(v)
            if pkce_s256(v)
                .is_some_and(|c| constant_time_eq(c.as_bytes(), challenge.as_bytes())) =>
        {
            Ok(())
        }
        Some(_) => Err(invalid_grant(
            501481,
            "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
        )),
        None => Err(invalid_grant(
            50148,
            "The code_verifier is required for a code issued with a code_challenge.",
        )),
    }
}
