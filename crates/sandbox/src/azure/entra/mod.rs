//! Entra ID look-alike: OIDC discovery, JWKS, authorize (sign-in page with test users), token
//! endpoint (client credentials, authorization code + PKCE S256), and Graph `/v1.0/me`.
//!
//! OIDC discovery and JWKS live here; `token` is the token endpoint, `assertion` its client
//! assertions (certificate, workload identity), `claims` the tokens it mints, `authorize` the
//! sign-in page, `graph` the Graph and userinfo endpoints, `managed_identity` the App Service
//! identity endpoint, `workload_issuer` the cluster OIDC issuer of federated tokens.

mod assertion;
mod audience;
mod authorize;
mod claims;
mod graph;
mod managed_identity;
mod token;
mod workload_issuer;

use std::collections::HashMap;

use axum::{
    Router,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

use super::{Shared, config::ClientApp, http::AppState};

const MULTI_TENANT: [&str; 3] = ["common", "organizations", "consumers"];

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
            get(authorize::authorize_page).post(authorize::authorize_submit),
        )
        .route("/{tenant}/oauth2/v2.0/token", post(token::token_v2))
        .route("/{tenant}/oauth2/token", post(token::token_v1))
        .route("/v1.0/me", get(graph::graph_me))
        .route("/oidc/userinfo", get(graph::userinfo).post(graph::userinfo))
        .route("/msi/token", get(managed_identity::msi_token))
        .route(
            "/workload-identity/.well-known/openid-configuration",
            get(workload_issuer::discovery),
        )
        .route(
            "/workload-identity/openid/v1/jwks",
            get(workload_issuer::jwks),
        )
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

fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn find_app(shared: &Shared, client_id: &str) -> Option<ClientApp> {
    shared
        .config
        .apps()
        .into_iter()
        .find(|a| a.client_id == client_id)
}
