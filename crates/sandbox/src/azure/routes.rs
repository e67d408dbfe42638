//! The router: every API family's routes under one listener, with the call log and the
//! `x-ms-requestid` / `x-ms-correlationid` echo. Nothing else in the sandbox depends on this
//! module, so the API modules can share the lower helpers (`http`, `auth`, `errors`) without
//! depending on each other.

use std::sync::Arc;

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request, State},
    http::{HeaderName, HeaderValue},
    middleware::{self, Next},
    response::Response,
};
use uuid::Uuid;

use super::{
    Shared, entra, faults, fulfillment,
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
    let response = next.run(request).await;
    let at = rfc3339(shared.now());
    tracing::debug!(%method, %path, status = response.status().as_u16(), "azure sandbox call");
    shared.lock().log_call(CallLogEntry {
        at,
        method,
        path,
        status: response.status().as_u16(),
    });
    response
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
