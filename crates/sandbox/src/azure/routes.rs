//! The router: every API family's routes under one listener, with the call log and the
//! `x-ms-requestid` / `x-ms-correlationid` echo. Nothing else in the sandbox depends on this
//! module, so the API modules can share the lower helpers (`http`, `auth`, `errors`) without
//! depending on each other.

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    extract::{DefaultBodyLimit, Request, State},
    http::{HeaderName, HeaderValue, Method, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use serde_json::Value;
use uuid::Uuid;

use super::{
    Shared, auth, entra, fault_page, faults, fulfillment,
    http::AppState,
    metering, pages,
    state::{CallLogEntry, rfc3339},
};

/// Request bodies above this are refused (413).
const BODY_LIMIT: usize = 256 * 1024;

pub fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .merge(fulfillment::routes())
        .merge(metering::routes())
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            faults::inject,
        ))
        .layer(middleware::from_fn(request_ids));
    Router::new()
        .nest("/api", api)
        .merge(entra::routes())
        .merge(pages::routes())
        .merge(fault_page::routes())
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            faults::switched,
        ))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            faults::outage,
        ))
        .layer(middleware::from_fn_with_state(shared.clone(), log_calls))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared)
}

/// Records every call for the log page and `AzureSandboxHandle::call_log`.
async fn log_calls(State(shared): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let (request, app_id) = match caller_app(&shared, request).await {
        Ok(found) => found,
        Err(too_large) => return too_large,
    };
    let response = next.run(request).await;
    let at = rfc3339(shared.now());
    // A reset answers nothing: 0, as the AWS sandbox logs it.
    let status = match response.extensions().get::<crate::outage::WasReset>() {
        Some(_) => 0,
        None => response.status().as_u16(),
    };
    tracing::debug!(%method, %path, status, "azure sandbox call");
    shared.lock().log_call(CallLogEntry {
        at,
        method,
        path,
        status,
        app_id,
    });
    response
}

/// The Entra app behind a call, for the log: the `appid` (v1) or `azp` (v2) of a bearer token
/// the sandbox signed, or the `client_id` of a token request's form. Tests read it to see which
/// of the publisher's apps (API or landing page) made each call.
async fn caller_app(
    shared: &Shared,
    request: Request,
) -> Result<(Request, Option<String>), Response> {
    if let Some(token) = auth::bearer(request.headers()) {
        let app = shared.key.verify(token).and_then(|claims| {
            claims
                .get("appid")
                .or_else(|| claims.get("azp"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        return Ok((request, app));
    }
    if request.method() != Method::POST || !request.uri().path().ends_with("/token") {
        return Ok((request, None));
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| StatusCode::PAYLOAD_TOO_LARGE.into_response())?;
    let app = url::form_urlencoded::parse(&bytes)
        .find(|(name, _)| name == "client_id")
        .map(|(_, value)| value.into_owned());
    Ok((Request::from_parts(parts, Body::from(bytes)), app))
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-requestid");
static CORRELATION_ID: HeaderName = HeaderName::from_static("x-ms-correlationid");

/// Echoes `x-ms-requestid` / `x-ms-correlationid`, generating them when absent.
async fn request_ids(request: Request, next: Next) -> Response {
    let (request_id, correlation_id) = {
        let headers = request.headers();
        let pick = |name: &HeaderName| {
            headers
                .get(name)
                .cloned()
                .or_else(|| HeaderValue::from_str(&Uuid::new_v4().to_string()).ok())
        };
        (pick(&REQUEST_ID), pick(&CORRELATION_ID))
    };
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Some(v) = request_id {
        headers.insert(REQUEST_ID.clone(), v);
    }
    if let Some(v) = correlation_id {
        headers.insert(CORRELATION_ID.clone(), v);
    }
    response
}
