//! The router, shared HTTP helpers: request ids, call log, API errors, bearer-token checks.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Router,
    body::Body,
    extract::{DefaultBodyLimit, Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    Shared, entra, fulfillment, metering, pages,
    state::{ApiError, CallLogEntry, rfc3339},
};

pub type AppState = Arc<Shared>;

/// Request bodies above this are refused (413).
const BODY_LIMIT: usize = 256 * 1024;

pub const API_VERSION: &str = "2018-08-31";

pub fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .merge(fulfillment::routes())
        .merge(metering::routes())
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        response.headers_mut().insert(
            HeaderName::from_static("x-ms-error-response"),
            HeaderValue::from_static("true"),
        );
        response
    }
}

/// 200 with a JSON body.
pub fn json_ok(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// `api-version=2018-08-31` is required on every marketplace call.
pub fn check_api_version(query: &HashMap<String, String>) -> Result<(), ApiError> {
    match query.get("api-version").map(String::as_str) {
        Some(API_VERSION) => Ok(()),
        Some(other) => Err(ApiError::fulfillment(
            StatusCode::BAD_REQUEST,
            "InvalidApiVersion",
            format!("The api-version '{other}' is not supported; use {API_VERSION}."),
        )),
        None => Err(ApiError::fulfillment(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter is required.",
        )),
    }
}

/// Parses a JSON request body, with the Fulfillment error shape on failure.
pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("A JSON request body is required."));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("The request body is not valid JSON: {e}")))
}

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

pub fn fulfillment_error(status: StatusCode, code: &str, message: String) -> ApiError {
    ApiError::fulfillment(status, code, message)
}

/// Metering API error shape: `{"code", "message"}`.
pub fn metering_error(status: StatusCode, code: &str, message: String) -> ApiError {
    ApiError {
        status,
        body: json!({"code": code, "message": message}),
    }
}

/// An HTML page.
pub fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        Body::from(body),
    )
        .into_response()
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
