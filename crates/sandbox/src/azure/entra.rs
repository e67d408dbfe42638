//! Entra ID look-alike: OIDC discovery, JWKS, authorize (sign-in page with test users), token
//! endpoint (client credentials, authorization code + PKCE S256), and Graph `/v1.0/me`.

use std::collections::HashMap;

use axum::{
    Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::Duration;

use super::{
    Shared,
    config::{ClientApp, GRAPH_RESOURCE_ID, TestUser},
    http::{AppState, bearer, check_token, esc, html},
    keys::{constant_time_eq, random_token},
    state::{AuthCode, rfc3339},
    webhook::derived_guid,
};

const MULTI_TENANT: [&str; 3] = ["common", "organizations", "consumers"];
const GRAPH_URL: &str = "https://graph.microsoft.com";
/// Authorization codes live this long.
const CODE_TTL_SECS: i64 = 600;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(discovery_v2),
        )
        .route(
            "/{tenant}/.well-known/openid-configuration",
            get(discovery_v1),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(jwks))
        .route("/{tenant}/discovery/keys", get(jwks))
        .route(
            "/{tenant}/oauth2/v2.0/authorize",
            get(authorize_page).post(authorize_submit),
        )
        .route("/{tenant}/oauth2/v2.0/token", post(token_v2))
        .route("/{tenant}/oauth2/token", post(token_v1))
        .route("/v1.0/me", get(graph_me))
        .route("/oidc/userinfo", get(userinfo).post(userinfo))
}

fn tenant_known(shared: &Shared, tenant: &str) -> bool {
    MULTI_TENANT.contains(&tenant)
        || shared.config.apps().iter().any(|a| a.tenant_id == tenant)
        || shared.config.users.iter().any(|u| u.tenant_id == tenant)
}

fn tenant_not_found(tenant: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({
            "error": "invalid_tenant",
            "error_description": format!("AADSTS90002: Tenant '{tenant}' not found."),
            "error_codes": [90002],
        })),
    )
        .into_response()
}

fn cached_json(body: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "max-age=86400, private")],
        axum::Json(body),
    )
        .into_response()
}

async fn discovery_v2(State(shared): State<AppState>, Path(tenant): Path<String>) -> Response {
    if !tenant_known(&shared, &tenant) {
        return tenant_not_found(&tenant);
    }
    let base = &shared.base_url;
    let issuer = if MULTI_TENANT.contains(&tenant.as_str()) {
        shared.issuer_v2("{tenantid}")
    } else {
        shared.issuer_v2(&tenant)
    };
    cached_json(json!({
        "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": issuer,
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": format!("{base}/oidc/userinfo"),
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{base}/{tenant}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "code_challenge_methods_supported": ["S256"],
        "kerberos_endpoint": format!("{base}/{tenant}/kerberos"),
        "tenant_region_scope": "WW",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }))
}

async fn discovery_v1(State(shared): State<AppState>, Path(tenant): Path<String>) -> Response {
    if !tenant_known(&shared, &tenant) {
        return tenant_not_found(&tenant);
    }
    let base = &shared.base_url;
    let issuer_tenant = if MULTI_TENANT.contains(&tenant.as_str()) {
        "{tenantid}"
    } else {
        tenant.as_str()
    };
    cached_json(json!({
        "token_endpoint": format!("{base}/{tenant}/oauth2/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/{tenant}/discovery/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
        "scopes_supported": ["openid"],
        "issuer": format!("https://sts.windows.net/{issuer_tenant}/"),
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/authorize"),
        "userinfo_endpoint": format!("{base}/{tenant}/openid/userinfo"),
        "microsoft_multi_refresh_token": true,
        "tenant_region_scope": "WW",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
    }))
}

async fn jwks(State(shared): State<AppState>, Path(tenant): Path<String>) -> Response {
    if !tenant_known(&shared, &tenant) {
        return tenant_not_found(&tenant);
    }
    cached_json(shared.key.jwks(&shared.issuer_v2("{tenantid}")))
}

// ---------------------------------------------------------------- token endpoint

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

fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
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

fn find_app(shared: &Shared, client_id: &str) -> Option<ClientApp> {
    shared
        .config
        .apps()
        .into_iter()
        .find(|a| a.client_id == client_id)
}

fn check_secret(app: &ClientApp, secret: &str) -> bool {
    constant_time_eq(app.client_secret.expose().as_bytes(), secret.as_bytes())
}

/// The marketplace access token (v1 shape, what the real marketplace API receives).
fn marketplace_token(shared: &Shared, app: &ClientApp) -> anyhow::Result<(String, i64, i64)> {
    let now = shared.now().unix_timestamp();
    let exp = now + shared.config.access_token_ttl_secs;
    let tid = app.tenant_id.as_str();
    let oid = derived_guid(&["sp", tid, &app.client_id]);
    let iss = format!("https://sts.windows.net/{tid}/");
    let claims = json!({
        "aud": shared.config.marketplace_resource_id,
        "iss": iss,
        "iat": now,
        "nbf": now,
        "exp": exp,
        "aio": random_token(24),
        "appid": app.client_id,
        "appidacr": "1",
        "idp": iss,
        "idtyp": "app",
        "oid": oid,
        "rh": random_token(16),
        "sub": oid,
        "tid": tid,
        "uti": random_token(16),
        "ver": "1.0",
    });
    Ok((shared.key.sign(&claims)?, now, exp))
}

async fn token_v2(
    State(shared): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    token(&shared, &tenant, &headers, &body, false)
}

async fn token_v1(
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

fn client_credentials_grant(
    shared: &Shared,
    tenant: &str,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    v1: bool,
) -> Response {
    let (client_id, secret) = client_credentials(headers, form);
    let Some(client_id) = client_id else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    let Some(app) = find_app(shared, &client_id) else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'."
            ),
        );
    };
    if app.tenant_id != tenant {
        return token_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'."
            ),
        );
    }
    let Some(secret) = secret else {
        return token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    };
    if !check_secret(&app, &secret) {
        return token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret provided.",
        );
    }
    let resource = shared.config.marketplace_resource_id.as_str();
    let wanted = if v1 {
        form.get("resource")
            .map(|r| r.trim_end_matches('/').to_string())
    } else {
        form.get("scope")
            .and_then(|s| s.strip_suffix("/.default"))
            .map(str::to_owned)
    };
    match wanted {
        Some(r) if r == resource => {}
        Some(r) => {
            return token_error(
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
            );
        }
        None if v1 => {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'resource'.",
            );
        }
        None => {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                1002012,
                "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
            );
        }
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

fn pkce_s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn authorization_code_grant(
    shared: &Shared,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Response {
    let invalid_grant =
        |code: u32, msg: &str| token_error(StatusCode::BAD_REQUEST, "invalid_grant", code, msg);
    let Some(code) = form.get("code") else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'code'.",
        );
    };
    let now = shared.now();
    // Single use: the code is gone whatever happens next.
    let Some(grant) = shared.lock().auth_codes.remove(code) else {
        return invalid_grant(
            54005,
            "OAuth2 Authorization code was already redeemed or is invalid.",
        );
    };
    if grant.expires_at <= now {
        return invalid_grant(
            70008,
            "The provided authorization code or refresh token has expired.",
        );
    }
    let (client_id, secret) = client_credentials(headers, form);
    if client_id.as_deref() != Some(grant.client_id.as_str()) {
        return invalid_grant(70000, "The code was issued to another client.");
    }
    if form.get("redirect_uri") != Some(&grant.redirect_uri) {
        return invalid_grant(
            50148,
            "The redirect_uri does not match the one used in the authorization request.",
        );
    }
    let Some(app) = find_app(shared, &grant.client_id) else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            "Application not found.",
        );
    };
    match secret {
        Some(secret) if !check_secret(&app, &secret) => {
            return token_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                "Invalid client secret provided.",
            );
        }
        Some(_) => {}
        None if grant.code_challenge.is_none() => {
            return token_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            );
        }
        None => {}
    }
    if let Some(challenge) = &grant.code_challenge {
        match form.get("code_verifier") {
            Some(v) if constant_time_eq(pkce_s256(v).as_bytes(), challenge.as_bytes()) => {}
            Some(_) => {
                return invalid_grant(
                    501481,
                    "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                );
            }
            None => {
                return invalid_grant(
                    50148,
                    "The code_verifier is required for a code issued with a code_challenge.",
                );
            }
        }
    }
    let Some(user) = shared.config.user(&grant.user_object_id).cloned() else {
        return invalid_grant(50034, "The user account does not exist.");
    };
    match user_tokens(shared, &app, &user, &grant) {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "azure sandbox: signing failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// ID token and delegated Graph token for a signed-in user.
fn user_tokens(
    shared: &Shared,
    app: &ClientApp,
    user: &TestUser,
    grant: &AuthCode,
) -> anyhow::Result<Value> {
    let now = shared.now().unix_timestamp();
    let exp = now + shared.config.access_token_ttl_secs;
    let scopes: Vec<&str> = grant.scope.split_whitespace().collect();
    let tid = user.tenant_id.as_str();
    let pairwise_sub = URL_SAFE_NO_PAD.encode(Sha256::digest(format!(
        "{}|{}",
        app.client_id, user.object_id
    )));
    let upn = user.user_principal_name.clone();
    let mut graph = json!({
        "aud": GRAPH_RESOURCE_ID,
        "iss": format!("https://sts.windows.net/{tid}/"),
        "iat": now,
        "nbf": now,
        "exp": exp,
        "acct": 0,
        "aio": random_token(24),
        "amr": ["pwd"],
        "app_displayname": app.display_name,
        "appid": app.client_id,
        "appidacr": "1",
        "idtyp": "user",
        "name": user.display_name,
        "oid": user.object_id,
        "scp": "openid profile email User.Read",
        "sub": pairwise_sub,
        "tid": tid,
        "uti": random_token(16),
        "ver": "1.0",
    });
    if let (Some(upn), Some(obj)) = (&upn, graph.as_object_mut()) {
        obj.insert("upn".into(), json!(upn));
        obj.insert("unique_name".into(), json!(upn));
    }
    let mut body = json!({
        "token_type": "Bearer",
        "scope": "openid profile email User.Read",
        "expires_in": exp - now,
        "ext_expires_in": exp - now,
        "access_token": shared.key.sign(&graph)?,
    });
    if scopes.contains(&"openid") {
        let mut id = json!({
            "aud": app.client_id,
            "iss": shared.issuer_v2(tid),
            "iat": now,
            "nbf": now,
            "exp": exp,
            "aio": random_token(24),
            "name": user.display_name,
            "oid": user.object_id,
            "rh": random_token(16),
            "sub": pairwise_sub,
            "tid": tid,
            "uti": random_token(16),
            "ver": "2.0",
        });
        if let Some(obj) = id.as_object_mut() {
            if let Some(nonce) = &grant.nonce {
                obj.insert("nonce".into(), json!(nonce));
            }
            if let Some(username) = user.user_principal_name.as_ref().or(user.mail.as_ref()) {
                obj.insert("preferred_username".into(), json!(username));
            }
            if scopes.contains(&"email")
                && let Some(mail) = &user.mail
            {
                obj.insert("email".into(), json!(mail));
            }
        }
        if let Some(obj) = body.as_object_mut() {
            obj.insert("id_token".into(), json!(shared.key.sign(&id)?));
        }
    }
    Ok(body)
}

// ---------------------------------------------------------------- authorize

/// A checked authorization request.
struct AuthRequest {
    client_id: String,
    redirect_uri: String,
    scope: String,
    state: Option<String>,
    nonce: Option<String>,
    response_mode: String,
    code_challenge: Option<String>,
}

enum AuthError {
    /// Shown to the user: no safe redirect_uri to return to.
    Page(String),
    /// Sent back to the client's redirect_uri.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
}

fn check_auth_request(
    shared: &Shared,
    tenant: &str,
    p: &HashMap<String, String>,
) -> Result<AuthRequest, AuthError> {
    if !tenant_known(shared, tenant) {
        return Err(AuthError::Page(format!(
            "AADSTS90002: Tenant '{tenant}' not found."
        )));
    }
    let client_id = p.get("client_id").cloned().unwrap_or_default();
    if find_app(shared, &client_id).is_none() {
        return Err(AuthError::Page(format!(
            "AADSTS700016: Application with identifier '{client_id}' was not found."
        )));
    }
    let redirect_uri = p.get("redirect_uri").cloned().unwrap_or_default();
    let valid_redirect = url::Url::parse(&redirect_uri)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.fragment().is_none());
    if !valid_redirect {
        return Err(AuthError::Page(format!(
            "AADSTS50011: The redirect URI '{redirect_uri}' is not valid."
        )));
    }
    let state = p.get("state").cloned();
    let redirect_err = |error: &'static str, description: String| AuthError::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        error,
        description,
    };
    if p.get("response_type").map(String::as_str) != Some("code") {
        return Err(redirect_err(
            "unsupported_response_type",
            "AADSTS700054: only response_type=code is supported by the sandbox.".into(),
        ));
    }
    let scope = p.get("scope").cloned().unwrap_or_default();
    if scope.trim().is_empty() {
        return Err(redirect_err(
            "invalid_request",
            "AADSTS900144: The request body must contain the following parameter: 'scope'.".into(),
        ));
    }
    let code_challenge = p.get("code_challenge").cloned();
    match (
        code_challenge.is_some(),
        p.get("code_challenge_method").map(String::as_str),
    ) {
        (true, Some("S256")) | (false, None) => {}
        (true, _) => {
            return Err(redirect_err(
                "invalid_request",
                "AADSTS501491: code_challenge_method must be S256.".into(),
            ));
        }
        (false, Some(_)) => {
            return Err(redirect_err(
                "invalid_request",
                "AADSTS501491: code_challenge_method without code_challenge.".into(),
            ));
        }
    }
    let response_mode = p
        .get("response_mode")
        .cloned()
        .unwrap_or_else(|| "query".into());
    if !matches!(response_mode.as_str(), "query" | "form_post") {
        return Err(redirect_err(
            "invalid_request",
            "AADSTS900144: response_mode must be query or form_post.".into(),
        ));
    }
    Ok(AuthRequest {
        client_id,
        redirect_uri,
        scope,
        state,
        nonce: p.get("nonce").cloned(),
        response_mode,
        code_challenge,
    })
}

fn users_for_tenant<'a>(shared: &'a Shared, tenant: &str) -> Vec<&'a TestUser> {
    shared
        .config
        .users
        .iter()
        .filter(|u| MULTI_TENANT.contains(&tenant) || u.tenant_id == tenant)
        .collect()
}

fn auth_error_response(err: AuthError) -> Response {
    match err {
        AuthError::Page(message) => html(
            StatusCode::BAD_REQUEST,
            format!(
                "<!doctype html><title>Sign in error</title><h1>Sorry, but we're having trouble signing you in.</h1><p>{}</p>",
                esc(&message)
            ),
        ),
        AuthError::Redirect {
            redirect_uri,
            state,
            error,
            description,
        } => {
            let mut params = vec![
                ("error", error.to_string()),
                ("error_description", description),
            ];
            if let Some(state) = state {
                params.push(("state", state));
            }
            redirect_with(&redirect_uri, &params)
        }
    }
}

fn redirect_with(redirect_uri: &str, params: &[(&str, String)]) -> Response {
    let mut url = match url::Url::parse(redirect_uri) {
        Ok(u) => u,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    url.query_pairs_mut()
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
    (StatusCode::FOUND, [(header::LOCATION, url.to_string())]).into_response()
}

async fn authorize_page(
    State(shared): State<AppState>,
    Path(tenant): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Err(e) = check_auth_request(&shared, &tenant, &params) {
        return auth_error_response(e);
    }
    let hidden: String = params
        .iter()
        .filter(|(k, _)| k.as_str() != "user")
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                esc(k),
                esc(v)
            )
        })
        .collect();
    let users: String = users_for_tenant(&shared, &tenant)
        .iter()
        .map(|u| {
            let contact = u
                .mail
                .as_deref()
                .map(|m| format!("mail: {m}"))
                .or_else(|| u.user_principal_name.as_deref().map(|p| format!("UPN only: {p}")))
                .unwrap_or_else(|| "no mail, no userPrincipalName".into());
            format!(
                "<li><form method=\"post\">{hidden}<input type=\"hidden\" name=\"user\" value=\"{oid}\"><button type=\"submit\">{name}</button> <small>{contact} &middot; tenant {tid}</small></form></li>",
                oid = esc(&u.object_id),
                name = esc(&u.display_name),
                contact = esc(&contact),
                tid = esc(&u.tenant_id),
            )
        })
        .collect();
    html(
        StatusCode::OK,
        format!(
            "<!doctype html><meta charset=\"utf-8\"><title>Sign in to your account</title>\
             <style>body{{font-family:sans-serif;max-width:40em;margin:3em auto}}li{{margin:.6em 0}}</style>\
             <h1>Pick an account</h1><p>Microsoft Entra ID sandbox &mdash; tenant <code>{}</code></p><ul>{users}</ul>",
            esc(&tenant)
        ),
    )
}

async fn authorize_submit(
    State(shared): State<AppState>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    let params = form(&body);
    let request = match check_auth_request(&shared, &tenant, &params) {
        Ok(r) => r,
        Err(e) => return auth_error_response(e),
    };
    let user_id = params.get("user").cloned().unwrap_or_default();
    if !users_for_tenant(&shared, &tenant)
        .iter()
        .any(|u| u.object_id == user_id)
    {
        return auth_error_response(AuthError::Redirect {
            redirect_uri: request.redirect_uri,
            state: request.state,
            error: "access_denied",
            description: "AADSTS50020: The user account does not exist in this tenant.".into(),
        });
    }
    let code = random_token(48);
    let now = shared.now();
    shared.lock().auth_codes.insert(
        code.clone(),
        AuthCode {
            client_id: request.client_id,
            redirect_uri: request.redirect_uri.clone(),
            scope: request.scope,
            nonce: request.nonce,
            code_challenge: request.code_challenge,
            user_object_id: user_id,
            expires_at: now + Duration::seconds(CODE_TTL_SECS),
        },
    );
    let mut params = vec![("code", code)];
    if let Some(state) = request.state {
        params.push(("state", state));
    }
    if request.response_mode == "form_post" {
        let fields: String = params
            .iter()
            .map(|(k, v)| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", esc(v)))
            .collect();
        return html(
            StatusCode::OK,
            format!(
                "<!doctype html><title>Working...</title><body onload=\"document.forms[0].submit()\"><form method=\"post\" action=\"{}\">{fields}<noscript><button>Continue</button></noscript></form>",
                esc(&request.redirect_uri)
            ),
        );
    }
    redirect_with(&request.redirect_uri, &params)
}

// ---------------------------------------------------------------- Graph

fn graph_error(status: StatusCode, code: &str, message: &str, now: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "error": {
                "code": code,
                "message": message,
                "innerError": {"date": now, "request-id": uuid::Uuid::new_v4(), "client-request-id": uuid::Uuid::new_v4()},
            }
        })),
    )
        .into_response()
}

/// The signed-in user of a delegated Graph token.
fn graph_user(shared: &Shared, headers: &HeaderMap) -> Result<TestUser, Box<Response>> {
    let now = rfc3339(shared.now());
    let fail =
        |status, code: &str, message: &str| Box::new(graph_error(status, code, message, &now));
    let token = bearer(headers).ok_or_else(|| {
        fail(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty.",
        )
    })?;
    let audiences = [GRAPH_RESOURCE_ID, GRAPH_URL, "https://graph.microsoft.com/"];
    let claims = check_token(shared, token, &audiences)
        .map_err(|e| fail(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", &e))?;
    if claims.get("scp").is_none() {
        return Err(fail(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "/me request is only valid with delegated authentication flow.",
        ));
    }
    let oid = claims
        .get("oid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    shared.config.user(oid).cloned().ok_or_else(|| {
        fail(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            "The user does not exist.",
        )
    })
}

async fn graph_me(State(shared): State<AppState>, headers: HeaderMap) -> Response {
    let user = match graph_user(&shared, &headers) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    axum::Json(json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
        "businessPhones": [],
        "displayName": user.display_name,
        "givenName": user.given_name,
        "jobTitle": null,
        "mail": user.mail,
        "mobilePhone": null,
        "officeLocation": null,
        "preferredLanguage": null,
        "surname": user.surname,
        "userPrincipalName": user.user_principal_name,
        "id": user.object_id,
    }))
    .into_response()
}

async fn userinfo(State(shared): State<AppState>, headers: HeaderMap) -> Response {
    let user = match graph_user(&shared, &headers) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let mut body = json!({
        "sub": user.object_id,
        "name": user.display_name,
        "picture": format!("{GRAPH_URL}/v1.0/me/photo/$value"),
    });
    if let Some(obj) = body.as_object_mut() {
        if let Some(g) = &user.given_name {
            obj.insert("given_name".into(), json!(g));
        }
        if let Some(s) = &user.surname {
            obj.insert("family_name".into(), json!(s));
        }
        if let Some(m) = &user.mail {
            obj.insert("email".into(), json!(m));
        }
    }
    axum::Json(body).into_response()
}
