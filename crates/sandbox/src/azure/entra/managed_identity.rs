//! The App Service managed identity endpoint (`IDENTITY_ENDPOINT`, here `{base_url}/msi/token`),
//! as learn.microsoft.com "How to use managed identities for App Service and Azure Functions",
//! REST endpoint reference, describes it: `GET ?resource=<app id URI>&api-version=2019-08-01`
//! (optional `client_id` of a user-assigned identity), header `X-IDENTITY-HEADER` =
//! `IDENTITY_HEADER`; answer `{access_token, expires_on (epoch seconds, a string), resource,
//! token_type, client_id}`.
//!
//! The identity is the publisher app (the client id named in Partner Center's technical
//! configuration), so its tokens are what the marketplace API accepts. Only when
//! `app_credentials.identity_header` is set; the sandbox listens on loopback, never on the
//! instance metadata address.

use std::collections::HashMap;

use axum::{
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::claims::marketplace_token;
use crate::azure::{http::AppState, keys::constant_time_eq};

const API_VERSION: &str = "2019-08-01";

fn refuse(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "statusCode": status.as_u16(), "message": message })),
    )
        .into_response()
}

pub(super) async fn msi_token(
    State(shared): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some(expected) = &shared.config.app_credentials.identity_header else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let presented = headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !constant_time_eq(presented.as_bytes(), expected.expose().as_bytes()) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "The X-IDENTITY-HEADER header is missing or does not match IDENTITY_HEADER.",
        );
    }
    if query.get("api-version").map(String::as_str) != Some(API_VERSION) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "api-version is missing or not supported: use 2019-08-01.",
        );
    }
    let resource = query
        .get("resource")
        .map(|r| r.trim_end_matches('/'))
        .unwrap_or_default();
    if resource != shared.config.marketplace_resource_id {
        return refuse(
            StatusCode::BAD_REQUEST,
            &format!("The resource '{resource}' is not known to this sandbox."),
        );
    }
    let Some(app) = shared.config.apps().into_iter().next() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if query
        .get("client_id")
        .is_some_and(|id| *id != app.client_id)
    {
        // What azure_identity reports as "The requested identity has not been assigned".
        return refuse(
            StatusCode::BAD_REQUEST,
            "No managed identity with this client_id is assigned to this resource.",
        );
    }
    match marketplace_token(&shared, &app) {
        Ok((access_token, _, exp)) => axum::Json(json!({
            "access_token": access_token,
            "expires_on": exp.to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": app.client_id,
        }))
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "azure sandbox: signing failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
