//! marketlink-web: the HTTP front end (axum). Routes, pages and APIs stay thin: they parse,
//! authorise, call an engine use case (`marketlink-engine`) and draw its answer; the domain
//! rules live in the engine and `marketlink-core`.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod admin;
mod api;
pub mod api_auth;
mod buyer;
mod error;
pub mod extract;
#[doc(hidden)]
pub mod fuzzing;
mod headers;
mod health;
mod inbound;
pub mod limits;
mod manage;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod password;
mod people;
mod server;
pub mod session;
mod state;

use std::time::Duration;

use axum::{Router, http::HeaderName};
use tower_http::{
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::{DefaultOnResponse, TraceLayer},
};
use tracing::Level;

pub use crate::{
    error::AppError,
    server::{ServeOptions, serve},
    state::{App, AppState, WebSettings},
};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP surface with its middleware: request ids (generated or propagated and echoed
/// in the response), a trace span per request, a body size cap and a request timeout.
pub fn router(state: AppState) -> Router {
    let settings = state.settings.clone();
    if settings.metrics.enabled {
        metrics::install();
    }
    let routes = Router::new()
        .merge(health::routes())
        .merge(inbound::routes(&state))
        .merge(buyer::routes())
        .merge(api::routes())
        .merge(manage::routes())
        .merge(openapi::routes())
        .merge(metrics::routes())
        .merge(admin::routes())
        .merge(people::routes())
        .route("/static/style.css", axum::routing::get(stylesheet))
        // Innermost: a session is stored before its page goes out, and a failure to store
        // it becomes a 503 page (drawn by `render_page_errors`, outside).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            session::store_saved,
        ))
        .layer(axum::middleware::from_fn_with_state(
            rate_limiters(&state),
            limits::limit,
        ))
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            pages::render_page_errors,
        ))
        .with_state(state);
    let https = settings.public_url.starts_with("https://");
    headers::secure(routes, https)
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(RequestBodyLimitLayer::new(settings.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            settings.request_timeout,
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &axum::http::Request<_>| {
                    let request_id = request
                        .headers()
                        .get(REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!(
                        "http",
                        method = %request.method(),
                        path = %loggable_path(request.uri().path()),
                        // The route template, recorded once the router has matched.
                        route = tracing::field::Empty,
                        request_id = %request_id,
                    )
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// The request path as logged: invitation, approved set-up and email verification links carry
/// their one-time token in the path, and a token must never reach the logs. (Query strings, where landing tokens travel, are not
/// logged at all.)
fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    for prefix in ["/invite/", "/onboarding/", "/verify-email/"] {
        if let Some(token) = path.strip_prefix(prefix)
            && !token.is_empty()
        {
            return format!("{prefix}<redacted>").into();
        }
    }
    path.into()
}

/// Writes the API keys' use counters to the database every few seconds until `shutdown`.
pub async fn flush_key_use(state: AppState, shutdown: tokio_util::sync::CancellationToken) {
    loop {
        let stop = tokio::select! {
            () = shutdown.cancelled() => true,
            () = tokio::time::sleep(Duration::from_secs(5)) => false,
        };
        let counts = state.keys.drain();
        if !counts.is_empty()
            && let Err(error) = state.engine.record_key_use(&counts, state.now()).await
        {
            tracing::warn!(%error, "cannot record API key use; will retry");
            state.keys.restore(counts);
        }
        if stop {
            break;
        }
    }
}

/// The one stylesheet, compiled in: no build step, no files to deploy.
/// This server's rate limiters; the notification endpoints are the providers' own.
fn rate_limiters(state: &AppState) -> std::sync::Arc<limits::Limiters> {
    let notification_paths = state
        .engine
        .providers
        .iter()
        .flat_map(|p| p.inbound_endpoints())
        .map(|e| e.path.to_owned())
        .collect();
    limits::Limiters::new(&state.settings.rate_limits, notification_paths)
}

async fn stylesheet() -> impl axum::response::IntoResponse {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../static/style.css"),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn invitation_tokens_stay_out_of_logged_paths() {
        assert_eq!(
            super::loggable_path("/invite/abcDEF123"),
            "/invite/<redacted>"
        );
        assert_eq!(
            super::loggable_path("/onboarding/abcDEF123"),
            "/onboarding/<redacted>"
        );
        assert_eq!(
            super::loggable_path("/verify-email/abcDEF123"),
            "/verify-email/<redacted>"
        );
        assert_eq!(super::loggable_path("/api/v1/check"), "/api/v1/check");
    }
}
