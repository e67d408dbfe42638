//! Errors injected on demand: the next calls of a marketplace API path fail with a 500, a 429
//! or a slow answer, so that a client's retries can be exercised (`inject_errors`, tests
//! only); outages (`crate::outage`, tests only); and the faults of the scenario and the fault
//! page (`crate::switch`, `switched`), which answer the same way.
//!
//! 500 is documented for every Fulfillment operation (OpenAPI saasapi.v2.json, "Internal server
//! error."; `azure-details.md` §6: "500 = retry"). Microsoft documents no rate limit and no 429
//! (`azure-details.md` §6): the 429 here is the opt-in fault mode that section suggests, not
//! Microsoft behaviour. Nothing is injected unless a test asks.

use std::time::Duration;

use axum::{
    extract::{OriginalUri, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::{
    errors::ApiError,
    http::AppState,
    state::{CallLogEntry, rfc3339},
};
use crate::{outage::OutageKind, switch::FaultKind};

/// An error the sandbox answers on demand, see [`crate::azure::AzureSandboxHandle::inject_errors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedError {
    /// 500 with the API's error shape.
    Internal,
    /// 429 with `Retry-After: {0}` (seconds): not a documented Microsoft answer.
    Throttled(u64),
    /// The real answer, after this many milliseconds (for client timeouts): a client that
    /// gives up first never reaches the API, as when a request is stuck before the service.
    Slow(u64),
    /// The call is carried out at once, its answer sent this many milliseconds later: a client
    /// that gives up first does not know it took effect (a retry must not apply it twice).
    LateAnswer(u64),
}

/// Pending injections: (path suffix or `*`, error, calls left).
pub type Faults = Vec<(String, InjectedError, u32)>;

/// Takes the injection due for `path`, counting it down.
fn take(faults: &mut Faults, path: &str) -> Option<InjectedError> {
    let i = faults
        .iter()
        .position(|(suffix, _, left)| *left > 0 && (suffix == "*" || path.ends_with(suffix)))?;
    let entry = &mut faults[i];
    entry.2 -= 1;
    let error = entry.1;
    if entry.2 == 0 {
        faults.remove(i);
    }
    Some(error)
}

/// Middleware on the marketplace API routes.
pub async fn inject(State(shared): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let due = {
        let mut faults = shared
            .faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        take(&mut faults, &path)
    };
    let metering = !path.contains("/saas/");
    match due {
        None => next.run(request).await,
        Some(InjectedError::Slow(ms)) => {
            shared.sleep(Duration::from_millis(ms)).await;
            next.run(request).await
        }
        Some(InjectedError::LateAnswer(ms)) => late_answer(&shared, request, next, ms).await,
        Some(InjectedError::Internal) if metering => ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            body: json!({"code": "InternalServerError", "message": "An internal server error occurred."}),
        }
        .into_response(),
        Some(InjectedError::Internal) => ApiError::fulfillment(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "An internal server error occurred.",
        )
        .into_response(),
        Some(InjectedError::Throttled(secs)) => throttled(secs),
    }
}

/// Carries the call out at once and answers `ms` later.
async fn late_answer(shared: &AppState, request: Request, next: Next, ms: u64) -> Response {
    let method = request.method().to_string();
    // The full path, as the outer call log records it (under `/api` this layer sees less).
    let logged = request.extensions().get::<OriginalUri>().map_or_else(
        || request.uri().path().to_owned(),
        |uri| uri.path().to_owned(),
    );
    let response = next.run(request).await;
    // Logged now: a client that stops waiting drops this future (and the log entry the
    // outer layer would write), yet the call took effect.
    let at = rfc3339(shared.now());
    shared.lock().log_call(CallLogEntry {
        at,
        method,
        path: logged,
        status: response.status().as_u16(),
        app_id: None,
    });
    shared.sleep(Duration::from_millis(ms)).await;
    response
}

/// Whether a switched fault's `match` selects `path`: `jwks` is Entra's key set (v2 and v1
/// paths), anything else a suffix of the full path.
fn switch_matches(matching: &str, path: &str) -> bool {
    match matching {
        "jwks" => path.ends_with("/discovery/v2.0/keys") || path.ends_with("/discovery/keys"),
        suffix => path.ends_with(suffix),
    }
}

/// Middleware on every route: a fault of the scenario or the fault page (`crate::switch`)
/// answers for the service; the sandbox's own pages are never caught.
pub async fn switched(State(shared): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    if path.starts_with("/sandbox/") {
        return next.run(request).await;
    }
    let Some(fault) = shared
        .switches
        .hit(shared.now(), |m| switch_matches(m, &path))
    else {
        return next.run(request).await;
    };
    let api = path.starts_with("/api/");
    match fault.kind {
        FaultKind::Reset => crate::outage::reset(),
        FaultKind::Late => late_answer(&shared, request, next, fault.late_ms.unwrap_or(0)).await,
        FaultKind::Unavailable => unavailable(&path),
        FaultKind::ServerError if api && path.starts_with("/api/saas/") => ApiError::fulfillment(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "An internal server error occurred.",
        )
        .into_response(),
        FaultKind::ServerError if api => ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            body: json!({"code": "InternalServerError", "message": "An internal server error occurred."}),
        }
        .into_response(),
        FaultKind::ServerError => {
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response()
        }
        // Validation keeps AWS's throttling off Microsoft; were it here, it is a 429.
        FaultKind::TooManyRequests | FaultKind::Throttling => {
            throttled(fault.retry_after_secs.unwrap_or(1))
        }
    }
}

/// 429 with `Retry-After` (the opt-in fault mode, not a documented Microsoft answer).
fn throttled(secs: u64) -> Response {
    let mut response = ApiError::fulfillment(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        "Rate limit is exceeded. Try again later.",
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// 503 in the API's error shape, bare elsewhere (see `crate::outage`).
fn unavailable(path: &str) -> Response {
    if path.starts_with("/api/saas/") {
        ApiError::fulfillment(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "The service is temporarily unavailable.",
        )
        .into_response()
    } else if path.starts_with("/api/") {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: json!({"code": "ServiceUnavailable", "message": "The service is temporarily unavailable."}),
        }
        .into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response()
    }
}

/// Middleware on every route: an outage in force (see `crate::outage`) answers for the service.
pub async fn outage(State(shared): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    match shared
        .outages
        .hit(shared.now(), |suffix| path.ends_with(suffix))
    {
        None => next.run(request).await,
        Some(OutageKind::Reset) => crate::outage::reset(),
        Some(OutageKind::Unavailable) => unavailable(&path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injections_count_down_by_path() {
        let mut faults: Faults = vec![
            ("/resolve".into(), InjectedError::Internal, 2),
            ("*".into(), InjectedError::Throttled(1), 1),
        ];
        let resolve = "/saas/subscriptions/resolve";
        assert_eq!(take(&mut faults, resolve), Some(InjectedError::Internal));
        assert_eq!(
            take(&mut faults, "/saas/subscriptions/x"),
            Some(InjectedError::Throttled(1))
        );
        assert_eq!(take(&mut faults, resolve), Some(InjectedError::Internal));
        assert_eq!(take(&mut faults, resolve), None);
        assert!(faults.is_empty());
    }
}
